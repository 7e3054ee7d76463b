/** Builds the balancer a service's config names. */
import type { BalancerAlgorithm } from '../config/types.ts';
import type { Random } from '../clock.ts';
import type { Balancer } from './balancer.ts';
import { RoundRobinBalancer } from './round-robin.ts';

export function createBalancer(algorithm: BalancerAlgorithm, random: Random): Balancer {
  switch (algorithm) {
    case 'round-robin':
      return new RoundRobinBalancer(Math.floor(random() * 1024));
  }
}
