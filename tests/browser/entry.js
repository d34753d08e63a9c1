// analytics.js as a page would load it, bundled from npm so nothing comes from a CDN.
import { AnalyticsBrowser } from '@segment/analytics-next';
window.AnalyticsBrowser = AnalyticsBrowser;
