/** Number formatting shared by the panels (the Lineage tree's own rules, for the same look). */
export { formatMetric, formatBytes } from '../../src/lineage/model';
