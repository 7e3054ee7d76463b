/**
 * Hosts made of Linux network namespaces for multi-node tests: one bridge in
 * the test's own namespace (a flat pod network, as a CNI bridge or a cloud
 * VPC gives), and one namespace per "node" or "pod", each joined to the
 * bridge by a veth pair with its own address. Processes run inside with
 * `ip netns exec`. The test creates everything under a prefix of its own and
 * removes it all, even after a failure.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

export interface Lab {
  /** The test process's own address on the bridge. */
  readonly gateway: string;
  /** Adds a namespace joined to the bridge with `address` (in the lab's /16). */
  add(name: string, address: string): string;
  /** The command prefix that runs a program inside namespace `name`. */
  exec(name: string): string[];
  /** Spawns a process inside namespace `name` (killed by destroy()). */
  spawn(name: string, program: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  destroy(): void;
}

/** Whether this machine lets the test make namespaces and bridges (root, iproute2, a kernel with them). */
export function labSupported(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    const probe = `mlprobe${process.pid % 100000}`;
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'ignore' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
    return undefined;
  } catch (err) {
    return `ip netns unavailable: ${(err as Error).message}`;
  }
}

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

/** `subnet`: the first two octets of the lab's /16, e.g. "10.251". */
export function createLab(subnet: string): Lab {
  // Interface names have at most 15 characters: a short per-run tag.
  const tag = `ml${(process.pid % 10000).toString(36)}`;
  const bridge = `${tag}br`;
  const namespaces: string[] = [];
  const children = new Set<ChildProcess>();
  const gateway = `${subnet}.255.254`;
  removeStaleLab(gateway);
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${gateway}/16`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  const nsName = (name: string): string => `${tag}-${name}`;
  const lab: Lab = {
    gateway,
    add(name, address) {
      const ns = nsName(name);
      const index = namespaces.length;
      const outside = `${tag}v${index}a`;
      const inside = `${tag}v${index}b`;
      ip('netns', 'add', ns);
      namespaces.push(ns);
      ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
      ip('link', 'set', inside, 'netns', ns);
      ip('link', 'set', outside, 'master', bridge, 'up');
      ip('-n', ns, 'addr', 'add', `${address}/16`, 'dev', inside);
      ip('-n', ns, 'link', 'set', inside, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      return ns;
    },
    exec: (name) => ['ip', 'netns', 'exec', nsName(name)],
    spawn(name, program, args, env = {}) {
      const child = spawn('ip', ['netns', 'exec', nsName(name), program, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    destroy() {
      for (const child of children) child.kill('SIGKILL');
      for (const ns of namespaces) {
        try {
          ip('netns', 'del', ns); // its end of each veth pair goes with it, and the other end too
        } catch {
          // already gone
        }
      }
      try {
        ip('link', 'del', bridge);
      } catch {
        // already gone
      }
    },
  };
  return lab;
}

/** A lab a killed test run left behind (its bridge holds the gateway address): removed, with its namespaces. */
function removeStaleLab(gateway: string): void {
  const addresses = execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' });
  for (const line of addresses.split('\n')) {
    const match = /^\d+:\s+(ml[0-9a-z]+)br\s+inet\s+([\d.]+)\//.exec(line);
    if (match?.[2] !== gateway) continue;
    const tag = match[1] as string;
    for (const ns of execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n')) {
      const name = ns.split(' ')[0] ?? '';
      if (name.startsWith(`${tag}-`)) ip('netns', 'del', name);
    }
    ip('link', 'del', `${tag}br`);
  }
}
