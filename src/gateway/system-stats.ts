import { cpus, freemem, totalmem } from "node:os";

/** Machine-wide CPU use between two calls (or over a short window on the first call). */
export class CpuSampler {
  private last = snapshot();

  async usagePercent(): Promise<number> {
    let previous = this.last;
    let current = snapshot();
    if (current.total - previous.total <= 0) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      previous = current;
      current = snapshot();
    }
    this.last = current;
    const total = current.total - previous.total;
    const idle = current.idle - previous.idle;
    return total > 0 ? Math.round((1000 * (total - idle)) / total) / 10 : 0;
  }
}

function snapshot() {
  let idle = 0;
  let total = 0;
  for (const cpu of cpus()) {
    idle += cpu.times.idle;
    total += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq + cpu.times.idle;
  }
  return { idle, total };
}

export function memoryFigures() {
  const total = totalmem();
  const available = freemem();
  return { total_memory: total, memory_usage: total - available, available_memory: available };
}
