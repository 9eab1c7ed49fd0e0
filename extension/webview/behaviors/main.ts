/** Behaviors panel (minimal: the shared comparison view over bonsai/compare/behavior). */
import { startCompareView } from '../shared/compareView';

startCompareView({ title: 'Behaviors', codicon: 'symbol-event', kind: 'behavior' });
