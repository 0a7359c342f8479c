/**
 * A live progress line on stderr for long-running commands: rewritten in place on a terminal, printed every few
 * seconds otherwise (logs, CI), and once more at the end.
 */
export const progressLine = (render: () => string, options: { readonly everyMs?: number } = {}) => {
  const tty = process.stderr.isTTY === true
  const every = options.everyMs ?? (tty ? 500 : 5000)
  let last = ""
  const draw = () => {
    const line = render()
    if (tty) process.stderr.write(`\r\x1b[2K${line}`)
    else if (line !== last) process.stderr.write(`${line}\n`)
    last = line
  }
  const timer = setInterval(draw, every)
  timer.unref()
  return {
    done: () => {
      clearInterval(timer)
      draw()
      if (tty) process.stderr.write("\n")
    },
  }
}
