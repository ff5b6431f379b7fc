// The graph explorer: draws a node's neighbourhood with Cytoscape.js and loads more on demand
// (tap a node to expand it, double-tap to open its page). Never the whole graph.
import cytoscape from "cytoscape";

const root = document.getElementById("graph");
const info = document.getElementById("graph-info");
const neighboursUrl = root.dataset.neighboursUrl;
const expanded = new Set();

const COLOURS = { recording: "#2f5bea", entity: "#c4320a", topic: "#067647", speaker: "#7a2e9e" };

const cy = cytoscape({
  container: root,
  minZoom: 0.2,
  maxZoom: 3,
  style: [
    { selector: "node", style: {
      "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
      "background-color": (n) => COLOURS[n.data("kind")] || "#667085",
      "width": (n) => (n.data("kind") === "recording" ? 26 : 18),
      "height": (n) => (n.data("kind") === "recording" ? 26 : 18),
      "text-wrap": "ellipsis", "text-max-width": 140,
    } },
    { selector: "node.expanded", style: { "border-width": 3, "border-color": "#1d2330" } },
    { selector: "edge", style: {
      "width": (e) => Math.min(1 + Math.log2(1 + Number(e.data("weight")) || 1), 6),
      "line-color": "#c8ccd4", "curve-style": "haystack", "opacity": 0.8,
    } },
  ],
});

async function expand(id) {
  if (expanded.has(id)) return;
  expanded.add(id);
  info.textContent = "Loading…";
  const response = await fetch(`${neighboursUrl}?node=${encodeURIComponent(id)}`, { credentials: "same-origin" });
  if (!response.ok) {
    expanded.delete(id);
    info.textContent = response.status === 503 ? "The graph database is unavailable." : "Could not load this node.";
    return;
  }
  const graph = await response.json();
  const added = cy.collection();
  for (const node of graph.nodes) {
    if (cy.getElementById(node.id).empty()) added.merge(cy.add({ group: "nodes", data: node }));
  }
  for (const edge of graph.edges) {
    if (cy.getElementById(edge.id).empty()) cy.add({ group: "edges", data: edge });
  }
  cy.getElementById(id).addClass("expanded");
  const centre = cy.getElementById(id);
  cy.layout({ name: "concentric", fit: true, animate: false, padding: 30,
    concentric: (n) => (expanded.has(n.id()) ? 2 : 1), levelWidth: () => 1 }).run();
  info.textContent = `${cy.nodes().length} nodes shown. Tap a node to show its links; double-tap to open it.`;
  root.dataset.nodes = String(cy.nodes().length);
  return { added, centre };
}

function pageOf(node) {
  const [kind, uid] = node.id().split(/:(.*)/s);
  if (kind === "recording") return `/recordings/${uid}/`;
  if (kind === "entity") return `/graph/entities/${uid}`;
  return null;
}

cy.on("tap", "node", (event) => expand(event.target.id()));
cy.on("dbltap", "node", (event) => {
  const url = pageOf(event.target);
  if (url) location.href = url;
});

window.graphExplorer = { cy, expand };  // for tests and the console
expand(root.dataset.start);
