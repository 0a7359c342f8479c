import { readlinkSync } from "node:fs"
import { setPriority } from "node:os"

/** The lowest priority a thread can have short of SCHED_IDLE (nice 19). */
export const BACKGROUND_NICE = 19

/**
 * Gives the calling thread the lowest CPU priority. Linux schedules threads, not processes, so this touches only the
 * caller (found through /proc/thread-self), never the engine's thread. Lowering one's own priority needs no
 * privilege. Where /proc/thread-self does not exist (not Linux), or the call fails, nothing changes: false.
 */
export const lowerThisThreadPriority = (): boolean => {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop())
    if (!Number.isInteger(tid) || tid <= 0) return false
    setPriority(tid, BACKGROUND_NICE)
    return true
  } catch {
    // A priority is an optimization: a thread that cannot lower its own keeps running as it is.
    return false
  }
}
