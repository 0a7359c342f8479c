/** NATS subjects of an app's endpoints: `eddy.<app>.p.<i>` for partition i, `eddy.<app>.coord` for the coordinator. */
import { COORDINATOR } from "../ports/Transport.ts"

const APP = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/

/** Why `app` cannot name subjects, if it cannot (subject tokens are non-empty, without spaces or wildcards). */
export const checkApp = (app: string): string | undefined =>
  APP.test(app) ? undefined : `app name '${app}' must be dot-separated segments of [A-Za-z0-9_-]`

export const checkEndpoint = (endpoint: number): string | undefined =>
  Number.isInteger(endpoint) && endpoint >= COORDINATOR ? undefined : `endpoint ${endpoint} is neither a partition index nor the coordinator (${COORDINATOR})`

export const subjectFor = (app: string, endpoint: number): string =>
  endpoint === COORDINATOR ? `eddy.${app}.coord` : `eddy.${app}.p.${endpoint}`
