/**
 * Small charts drawn in the page as inline SVG built with DOM APIs (no library, no style attributes).
 * @module views/chart
 */
import { h, svg } from '../dom.js';

const W = 600;
const H = 160;
const PAD = 36;

/**
 * A line chart of (x, y) points, x = time in ms.
 * @param {string} title @param {{x: number, y: number}[]} points @param {string} yLabel
 * @param {'line'|'bars'} kind @returns {HTMLElement}
 */
export function chart(title, points, yLabel, kind) {
  const fig = h('figure', { class: 'chart' });
  const pts = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (pts.length < 1) {
    fig.append(h('figcaption', {}, `${title}: not enough checkpoints yet`));
    return fig;
  }
  const x0 = Math.min(...pts.map((p) => p.x));
  const x1 = Math.max(...pts.map((p) => p.x));
  const y1 = Math.max(1, ...pts.map((p) => p.y));
  const sx = (/** @type {number} */ x) => PAD + (x1 === x0 ? (W - 2 * PAD) / 2 : ((x - x0) / (x1 - x0)) * (W - 2 * PAD));
  const sy = (/** @type {number} */ y) => H - PAD / 2 - (y / y1) * (H - PAD);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${pts.length} points, up to ${Math.round(y1)} ${yLabel}`, class: 'chart-svg' });
  root.append(svg('line', { x1: PAD, y1: H - PAD / 2, x2: W - PAD / 2, y2: H - PAD / 2, class: 'axis' }));
  root.append(svg('line', { x1: PAD, y1: PAD / 2, x2: PAD, y2: H - PAD / 2, class: 'axis' }));
  root.append(svg('text', { x: 2, y: PAD / 2 + 4, class: 'tick' }, String(Math.round(y1))));
  root.append(svg('text', { x: 2, y: H - PAD / 2, class: 'tick' }, '0'));
  if (kind === 'line') {
    root.append(svg('polyline', { points: pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' '), class: 'series' }));
    for (const p of pts) {
      root.append(svg('circle', { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 3, class: 'point' }, svg('title', {}, `${p.y} ${yLabel}`)));
    }
  } else {
    const bw = Math.max(1, (W - 2 * PAD) / Math.max(pts.length, 1) - 1);
    for (const p of pts) {
      const y = sy(p.y);
      root.append(svg('rect', { x: (sx(p.x) - bw / 2).toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: Math.max(0, H - PAD / 2 - y).toFixed(1), class: 'bar' },
        svg('title', {}, `${p.y.toFixed(1)} ${yLabel}`)));
    }
  }
  fig.append(root, h('figcaption', {}, `${title} (${pts.length} checkpoints, ${new Date(x0).toISOString().slice(11, 19)}\u2013${new Date(x1).toISOString().slice(11, 19)} UTC)`));
  return fig;
}
