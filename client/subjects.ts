/** NATS subjects of a cluster deployment's client endpoint (docs/client.md); `ns` is the deployment's namespace. */
export const clientSubjects = (ns: string) => ({
  ask: `eddy.${ns}.client.ask`,
  tell: `eddy.${ns}.client.tell`,
  state: `eddy.${ns}.client.state`,
  statePartition: (p: number) => `eddy.${ns}.client.state.p${p}`,
  list: `eddy.${ns}.client.list`,
  listPartition: (p: number) => `eddy.${ns}.client.list.p${p}`,
  info: `eddy.${ns}.client.info`,
  batch: `eddy.${ns}.client.batch`,
  /** Where a worker collects the answers to the requests of the batches it took. */
  answers: (worker: string) => `eddy.${ns}.client.answers.${worker}`,
})

/** Workers answering client subjects share this queue group: each request goes to one of them. */
export const FRONT_QUEUE = "eddy-front"
