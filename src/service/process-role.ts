/**
 * What this process does, chosen once at start: everything (one process),
 * the supervisor of several workers (no traffic: admin, discovery, health
 * checks and the one feedback decision for the host), or one of its workers
 * (traffic only: it reports samples and obeys the supervisor). The daemon and
 * the services ask the role instead of testing which process they are in.
 */
import type { OutlierSettings } from '../config/types.ts';
import { FeedbackController, type FeedbackDeps } from '../feedback/controller.ts';
import type { AvailabilityUpdate, FeedbackLoop } from '../feedback/loop.ts';
import { RemoteFeedback, type FeedbackLink } from '../feedback/remote.ts';

/** Listeners whose connections the supervisor accepts (socket activation) and hands to workers. */
export type HandedListener = 'outbound' | 'inbound';

/** What the supervisor can learn from its workers. */
export interface WorkerView {
  readonly wanted: number;
  readonly ready: number;
  /** Each worker's answer (a worker that does not answer in time is left out). */
  query(what: 'state' | 'metrics' | 'graph'): Promise<unknown[]>;
}

export interface ProcessRole {
  readonly name: 'single' | 'supervisor' | 'worker';
  /** Binds the data-path listeners (outbound, inbound, TCP), serves local services, limits concurrency. */
  readonly carriesTraffic: boolean;
  /** Runs health checks and the outlier detectors. */
  readonly decidesFeedback: boolean;
  /** Binds the admin listener. */
  readonly servesAdmin: boolean;
  /** Shares its listening ports with sibling workers (SO_REUSEPORT). */
  readonly sharesPorts: boolean;
  /** The supervisor's workers, whose numbers the admin API reports; undefined elsewhere. */
  readonly workers: WorkerView | undefined;
  /** The feedback loop of one service in this process. */
  feedbackLoop(service: string, settings: OutlierSettings, deps: Omit<FeedbackDeps, 'publish'>): FeedbackLoop;
  /** The port to bind for `listener`: a worker takes the one the first worker resolved. */
  port(listener: HandedListener, configured: number): number;
  /** Whether the supervisor accepts this listener's connections and hands them to this worker. */
  handedOver(listener: HandedListener): boolean;
}

const ownFeedback = (service: string, settings: OutlierSettings, deps: FeedbackDeps): FeedbackLoop =>
  new FeedbackController(service, settings, settings.returnRampMs, deps);

/** One process carries traffic and decides for itself. */
export const singleProcess: ProcessRole = {
  name: 'single',
  carriesTraffic: true,
  decidesFeedback: true,
  servesAdmin: true,
  sharesPorts: false,
  workers: undefined,
  feedbackLoop: ownFeedback,
  port: (_listener, configured) => configured,
  handedOver: () => false,
};

/** The supervisor: decides for every worker from all their samples and pushes each change to them. */
export function supervisorRole(publish: (service: string, update: AvailabilityUpdate) => void, workers: WorkerView): ProcessRole {
  return {
    name: 'supervisor',
    carriesTraffic: false,
    decidesFeedback: true,
    servesAdmin: true,
    sharesPorts: false,
    workers,
    feedbackLoop: (service, settings, deps) => ownFeedback(service, settings, { ...deps, publish: (update) => publish(service, update) }),
    port: (_listener, configured) => configured,
    handedOver: () => false,
  };
}

/** A worker: carries traffic on shared ports, reports every attempt over `link`, obeys the supervisor. */
export function workerRole(
  link: FeedbackLink,
  ports: { readonly outbound?: number; readonly inbound?: number },
  handoff: ReadonlySet<HandedListener>,
): ProcessRole {
  return {
    name: 'worker',
    carriesTraffic: true,
    decidesFeedback: false,
    servesAdmin: false,
    sharesPorts: true,
    workers: undefined,
    feedbackLoop: (service, _settings, deps) => new RemoteFeedback(service, link, deps.clock),
    port: (listener, configured) => ports[listener] ?? configured,
    handedOver: (listener) => handoff.has(listener),
  };
}
