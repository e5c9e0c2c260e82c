// The customer's position on a Leaflet map, with tiles from the configured URL. Where tiles
// cannot load (no internet), the marker still stands on the map and the coordinates and a link
// to the place show beside it.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";

let map = null;
let marker = null;
let tiles = null;

export function showPosition(element, { latitude, longitude }, { tilesUrl, attribution }) {
  if (!map) {
    map = L.map(element, { zoomControl: true, attributionControl: true }).setView([latitude, longitude], 14);
    marker = L.marker([latitude, longitude], { alt: "Customer's position", keyboard: false }).addTo(map);
  }
  if (tilesUrl && (!tiles || tiles._url !== tilesUrl)) {
    tiles?.remove();
    tiles = L.tileLayer(tilesUrl, { maxZoom: 19, attribution }).addTo(map);
  }
  marker.setLatLng([latitude, longitude]);
  map.setView([latitude, longitude], map.getZoom() || 14);
  // The panel may have been hidden when the map was made.
  setTimeout(() => map.invalidateSize(), 0);
}
