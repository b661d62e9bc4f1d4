/** vitest global setup: the browser tests need the built pages (dist/web); build them if missing or stale. */
import { ensureWebBuilt } from '../../scripts/ensure-web.js';

export function setup(): void {
  ensureWebBuilt();
}
