/**
 * The config `meshd run` uses when no file is given: outbound and admin on
 * loopback, no services yet. Kept as YAML so it passes the same validation;
 * its values come from DEFAULTS so they are written down once.
 */
import { DEFAULTS } from './defaults.ts';

export const DEFAULT_CONFIG_SOURCE = '<embedded default>';

export const DEFAULT_CONFIG_YAML = `
admin:
  listen: ${DEFAULTS.admin.listen}
outbound:
  listen: ${DEFAULTS.outbound.listen}
log:
  level: ${DEFAULTS.log.level}
services: {}
`;
