/**
 * The config `meshd run` uses when no file is given: outbound and admin on
 * loopback, no services yet. Kept as YAML so it passes the same validation.
 */
export const DEFAULT_CONFIG_SOURCE = '<embedded default>';

export const DEFAULT_CONFIG_YAML = `
admin:
  listen: 127.0.0.1:9990
outbound:
  listen: 127.0.0.1:4140
log:
  level: info
services: {}
`;
