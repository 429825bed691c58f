// The dashboard's behaviour (no network): plotly charts from the JSON embedded in the page, drawn
// when visible (charts in a closed <details> are drawn when it opens), and the test list's search.
const FIGURES = JSON.parse(document.getElementById('report-data').textContent);
const CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ['toImage']};

function draw(div) {
  if (div.dataset.drawn) return;
  const figure = FIGURES[div.dataset.figure];
  Plotly.newPlot(div, figure.data, figure.layout, CONFIG);
  div.dataset.drawn = 'true';
}
function drawVisible(root) {
  root.querySelectorAll('[data-figure]').forEach(div => {
    if (!div.closest('details:not([open])')) draw(div);
  });
}
document.querySelectorAll('details').forEach(details => {
  details.addEventListener('toggle', () => { if (details.open) drawVisible(details); });
});
drawVisible(document);

const search = document.getElementById('test-search');
const status = document.getElementById('test-status');
const count = document.getElementById('test-count');
function filterTests() {
  const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  document.querySelectorAll('#test-table .test-row').forEach(row => {
    const visible = words.every(w => row.dataset.search.includes(w))
      && (!status.value || row.dataset.status === status.value);
    row.hidden = !visible;
    if (visible) shown += 1;
  });
  count.textContent = shown + ' of ' + count.dataset.total + ' tests';
}
search.addEventListener('input', filterTests);
status.addEventListener('change', filterTests);
const query = new URLSearchParams(location.hash.slice(1)).get('test');
if (query) { search.value = query; }
filterTests();
document.body.dataset.rendered = 'true';
