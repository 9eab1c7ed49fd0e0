/** Layers panel entry point (see app.ts). */
import { startLayers } from './app';

startLayers();
