/** Builds the balancer a service's config names, zone-aware when the node has a zone. */
import type { Random } from '../clock.ts';
import type { BalancerConfig } from '../config/types.ts';
import type { Balancer } from './balancer.ts';
import { ewmaCost, leastRequestCost, P2CBalancer } from './p2c.ts';
import { DEFAULT_PEAK_EWMA, type PeakEwmaOptions } from './peak-ewma.ts';
import { RingHashBalancer } from './ring-hash.ts';
import { RoundRobinBalancer } from './round-robin.ts';
import { WeightedRoundRobinBalancer } from './weighted-round-robin.ts';
import { ZoneAwareBalancer } from './zone-aware.ts';

export function createBalancer(config: BalancerConfig, nodeZone: string | undefined, random: Random): Balancer {
  const make = (): Balancer => {
    switch (config.algorithm) {
      case 'p2c-ewma':
        return new P2CBalancer('p2c-ewma', ewmaCost, random, config.slowStart);
      case 'least-request':
        return new P2CBalancer('least-request', leastRequestCost, random, config.slowStart);
      case 'round-robin':
        return new RoundRobinBalancer(Math.floor(random() * 1024));
      case 'weighted-round-robin':
        return new WeightedRoundRobinBalancer(config.slowStart);
      case 'ring-hash':
        return new RingHashBalancer(new P2CBalancer('p2c-ewma', ewmaCost, random, config.slowStart));
    }
  };
  // Consistent hashing must not be split by zone: the same key would map differently per zone.
  if (config.zoneAware && nodeZone !== undefined && config.algorithm !== 'ring-hash') {
    return new ZoneAwareBalancer(nodeZone, make(), make(), random);
  }
  return make();
}

/** The peak-EWMA cost options a service's endpoints use. */
export function peakEwmaOptions(config: BalancerConfig): PeakEwmaOptions {
  return { decayMs: config.decayMs, defaultRttMs: config.defaultRttMs, failurePenalty: config.failurePenalty, failureAlpha: DEFAULT_PEAK_EWMA.failureAlpha };
}

/** Reads a request's consistent-hashing key from its fields. */
export type HashKeyReader = (request: { field(name: string): string | undefined }) => string | undefined;

/** How a request's hash key is read, for ring-hash; undefined for other algorithms. */
export function hashKeyReader(config: BalancerConfig): HashKeyReader | undefined {
  const on = config.hashOn;
  if (on === undefined) return undefined;
  if ('header' in on) {
    const name = on.header;
    return (request) => request.field(name);
  }
  const prefix = `${on.cookie}=`;
  return (request) => {
    const text = request.field('cookie');
    if (text === undefined) return undefined;
    for (const part of text.split(';')) {
      const trimmed = part.trim();
      if (trimmed.startsWith(prefix)) return trimmed.slice(prefix.length);
    }
    return undefined;
  };
}
