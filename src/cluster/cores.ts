/**
 * How many workers `workers: auto` means: one per core this process may
 * actually use. availableParallelism() counts the CPUs in the affinity mask,
 * but a container limited by a CPU quota (Kubernetes `resources.limits.cpu`,
 * systemd `CPUQuota=`) on a large node would then fork one worker per node
 * core and have them all throttled; the cgroup quota caps it.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** CPUs granted by a cgroup v2 `cpu.max` ("max 100000" or "200000 100000"); undefined when unlimited. */
export function quotaCpus(cpuMax: string): number | undefined {
  const [quota, period] = cpuMax.trim().split(/\s+/);
  if (quota === undefined || quota === 'max' || period === undefined) return undefined;
  const q = Number(quota);
  const p = Number(period);
  if (!(q > 0) || !(p > 0)) return undefined;
  return q / p;
}

/** Workers for `auto`: the affinity mask's CPUs, capped by the cgroup quota rounded up, at least 1. */
export function autoWorkers(parallelism: number, quota: number | undefined): number {
  const byQuota = quota === undefined ? Number.POSITIVE_INFINITY : Math.ceil(quota);
  return Math.max(1, Math.min(parallelism, byQuota));
}

function readCgroupQuota(): number | undefined {
  try {
    return quotaCpus(readFileSync('/sys/fs/cgroup/cpu.max', 'utf8'));
  } catch {
    return undefined; // cgroup v1 or no cgroup filesystem: no quota known
  }
}

export function workerCount(configured: number | 'auto'): number {
  return configured === 'auto' ? autoWorkers(availableParallelism(), readCgroupQuota()) : configured;
}
