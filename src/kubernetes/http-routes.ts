/**
 * Kubernetes mesh mode: the HTTPRoutes (gateway.networking.k8s.io/v1) of the
 * namespaces whose Services this meshd routes to; ./gamma.ts turns them into
 * a Service's rules. A cluster without the Gateway API CRDs answers 404: the
 * watch keeps retrying with back-off and Services route as without
 * HTTPRoutes.
 */
import type { HttpRouteObject } from './gamma.ts';
import { NamespacedObjects, type NamespacedKind } from './namespaced-objects.ts';

export const HTTP_ROUTES: NamespacedKind = {
  collection: (namespace) => `/apis/gateway.networking.k8s.io/v1/namespaces/${namespace}/httproutes`,
  plural: 'HTTPRoutes',
  withoutThem: 'Services route without them',
};

export type HttpRouteView = NamespacedObjects<HttpRouteObject>;
