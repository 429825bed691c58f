// Draws the report's charts and lineage from the JSON embedded in the page (no network).
const DATA = JSON.parse(document.getElementById('report-data').textContent);
const NS = 'http://www.w3.org/2000/svg';
function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
function chart(container, title, points, sla) {
  const W = 320, H = 150, P = 30;
  const box = document.createElement('div'); box.className = 'chart';
  box.innerHTML = '<h3></h3>'; box.firstChild.textContent = title;
  const svg = el('svg', {width: W, height: H, 'data-points': points.length}, box);
  const xs = points.map(p => Date.parse(p[0] + 'Z')), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), yMax = Math.max(...ys, sla || 0, 1);
  const sx = t => P + (x1 > x0 ? (t - x0) / (x1 - x0) : 0.5) * (W - 2 * P);
  const sy = v => H - P + 10 - (v / yMax) * (H - 2 * P);
  el('line', {x1: P, y1: sy(0), x2: W - P, y2: sy(0), stroke: '#999'}, svg);
  el('text', {x: 2, y: sy(yMax) + 4, 'font-size': 10}, svg).textContent = Math.round(yMax * 10) / 10;
  if (sla) el('line', {x1: P, y1: sy(sla), x2: W - P, y2: sy(sla), class: 'sla'}, svg);
  el('polyline', {fill: 'none', stroke: '#2563eb', 'stroke-width': 1.5,
    points: points.map((p, i) => sx(xs[i]) + ',' + sy(ys[i])).join(' ')}, svg);
  points.forEach((p, i) => {
    const dot = el('circle', {cx: sx(xs[i]), cy: sy(ys[i]), r: 2, fill: '#2563eb'}, svg);
    el('title', {}, dot).textContent = p[0] + ': ' + p[1];
  });
  el('text', {x: P, y: H - 4, 'font-size': 10}, svg).textContent = points.length ? points[0][0].slice(0, 10) : '';
  el('text', {x: W - P - 60, y: H - 4, 'font-size': 10}, svg).textContent = points.length ? points[points.length - 1][0].slice(0, 10) : '';
  container.appendChild(box);
}
for (const [table, metrics] of Object.entries(DATA.series)) {
  const volume = metrics.rows_added || metrics.row_count;
  if (volume) chart(document.getElementById('volume-charts'), table + (metrics.rows_added ? ' (rows delivered)' : ' (row count)'), volume);
  if (metrics.freshness_lag_hours) chart(document.getElementById('freshness-charts'), table, metrics.freshness_lag_hours, DATA.slas[table]);
}
if (DATA.lineage) {
  const L = DATA.lineage, box = document.getElementById('lineage'); box.innerHTML = '';
  const depths = Math.max(...L.nodes.map(n => n.depth)) + 1, rows = {}, pos = {};
  L.nodes.forEach(n => { rows[n.depth] = (rows[n.depth] || 0) + 1; pos[n.id] = [n.depth, rows[n.depth] - 1]; });
  const W = 220 * depths, H = 50 * Math.max(...Object.values(rows)) + 20;
  const svg = el('svg', {width: W, height: H, id: 'lineage-graph'}, box);
  const at = id => [20 + pos[id][0] * 220, 20 + pos[id][1] * 50];
  L.edges.forEach(([a, b]) => { const [x1, y1] = at(a), [x2, y2] = at(b);
    el('line', {x1: x1 + 170, y1: y1 + 12, x2: x2, y2: y2 + 12, stroke: '#888'}, svg); });
  L.nodes.forEach(n => { const [x, y] = at(n.id);
    el('rect', {x: x, y: y, width: 170, height: 24, rx: 4, class: 'lineage-node',
      fill: n.depth === 0 ? '#fde2e1' : (n.name === L.mart ? '#fff3c4' : '#eef2ff'), stroke: '#666'}, svg);
    el('text', {x: x + 6, y: y + 16, 'font-size': 11}, svg).textContent = n.name; });
}
document.body.dataset.rendered = 'true';
