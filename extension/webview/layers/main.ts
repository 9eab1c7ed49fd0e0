/** Layers panel (minimal: the shared comparison view over bonsai/compare/weights). */
import { startCompareView } from '../shared/compareView';

startCompareView({ title: 'Layers', codicon: 'layers', kind: 'weights' });
