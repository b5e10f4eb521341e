// Child processes of the end-to-end tests: the real `longlink dev` (started,
// interrupted and started again on the same directory) and `longlink chat`
// (a Go SDK client), with their output collected for waiting on lines.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export class Proc {
  constructor(bin, args) {
    this.out = "";
    this.waiters = [];
    this.p = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
    const take = (b) => {
      this.out += b.toString();
      for (const w of this.waiters.splice(0)) w();
    };
    this.p.stdout.on("data", take);
    this.p.stderr.on("data", take);
    this.exited = new Promise((r) => this.p.on("exit", (code, sig) => r({ code, sig })));
  }

  /** Waits until the output contains text (after `from`, an offset of the output). */
  async waitFor(text, ms = 20000, from = 0) {
    const deadline = Date.now() + ms;
    while (!this.out.slice(from).includes(text)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${JSON.stringify(text)}; output:\n${this.out.slice(-3000)}`);
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  say(line) {
    this.p.stdin.write(line + "\n");
  }

  /** SIGINT, as Ctrl-C: a graceful stop (drain), bounded by ms; then SIGKILL. */
  async stop(ms = 20000) {
    if (this.p.exitCode !== null || this.p.signalCode !== null) return;
    this.p.kill("SIGINT");
    const t = setTimeout(() => this.p.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(t);
  }
}

/** Starts `longlink dev` on dir and waits for its table; returns it with the client file it wrote. */
export async function startDev(bin, dir) {
  // LONGLINK_DEV_PORT_BASE: a block of ports of its own (the Go test picks a free one)
  const base = process.env.LONGLINK_DEV_PORT_BASE;
  const dev = new Proc(bin, ["dev", "-dir", dir, ...(base ? ["-port-base", base] : [])]);
  await dev.waitFor("\nchat ", 120000);
  dev.client = JSON.parse(readFileSync(join(dir, "client.json"), "utf8"));
  return dev;
}
