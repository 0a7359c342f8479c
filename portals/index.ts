export { Continuation } from "./Continuation.ts"
export { Portal, type AskerOptions, type Rejection, type ReplierOptions } from "./Portal.ts"
export type { Future, PortalContext } from "./PortalContext.ts"
