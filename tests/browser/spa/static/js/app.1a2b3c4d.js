// Test console script: stands in for the HAMi-WebUI bundle. It reads the runtime base path
// from the marker element the server rewrote, names the history-mode route it was loaded
// on, and calls the API the way the real frontend does: relative to the base, so that
// behind a base path of /hami/ the request goes to /hami/api/vgpu/v1/gpus.
(function () {
  'use strict';
  var marker = document.querySelector('base[data-hami-webui-base]');
  var base = marker ? marker.getAttribute('href') : '(no marker)';
  var app = document.getElementById('app');
  var result = document.getElementById('result');
  var route = location.pathname.indexOf(base) === 0
    ? '/' + location.pathname.slice(base.length)
    : location.pathname;
  app.dataset.base = base;
  app.dataset.route = route;
  app.dataset.state = 'ready';
  app.textContent = 'HAMi test console at ' + route;
  fetch('api/vgpu/v1/gpus', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ filters: {} })
  })
    .then(function (response) {
      return response.text().then(function (text) {
        result.dataset.status = String(response.status);
        result.dataset.url = response.url;
        result.textContent = text;
        result.dataset.state = response.ok ? 'ok' : 'failed';
      });
    })
    .catch(function (error) {
      result.textContent = String(error);
      result.dataset.state = 'failed';
    });
})();
