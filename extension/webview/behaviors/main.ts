/** Behaviors panel entry point (see app.ts). */
import { startBehaviors } from './app';

startBehaviors();
