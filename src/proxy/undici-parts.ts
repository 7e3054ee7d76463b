/**
 * The parts of undici meshd uses: the connection Pool and its connector.
 * Loading them directly instead of the package's index keeps fetch, the
 * WebSocket client, caches and mocks out of every meshd process (about
 * 12 MiB of resident memory, docs/design.md). These are internal paths of the
 * exact undici version pinned in package.json; an upgrade must keep them
 * (the integration tests load them).
 */
import Pool from 'undici/lib/dispatcher/pool.js';
import buildConnector from 'undici/lib/core/connect.js';

export { Pool, buildConnector };
