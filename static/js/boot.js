/* Loads htmx only where it can stream (EventSource). Older browsers (IE11) keep the plain forms.
   ES5 only: this file must parse in Chrome 49 / Firefox 52. */
(function () {
  'use strict';
  if (!('EventSource' in window) || !document.querySelector || !document.createElement) return;
  var me = document.currentScript || document.querySelector('script[data-htmx]');
  if (!me) return;
  // htmx 1.9's SSE extension calls NodeList.forEach, which Chrome 49 lacks.
  if (window.NodeList && !NodeList.prototype.forEach) NodeList.prototype.forEach = Array.prototype.forEach;
  function load(src, done) {
    var s = document.createElement('script');
    s.src = src;
    s.async = false;
    if (done) s.onload = done;
    document.head.appendChild(s);
  }
  // htmx 1.9 starts on DOMContentLoaded, or at once when readyState is 'complete'. Loaded from
  // here it may run in between (after DOMContentLoaded, while the page still loads: 'interactive')
  // and would then wait for an event that never comes. So, when it ran late, the event is sent
  // again once the SSE extension is there too (htmx's own listener is the only one left waiting).
  var contentLoaded = false;
  var htmxLate = false;
  document.addEventListener('DOMContentLoaded', function () { contentLoaded = true; });
  load(me.getAttribute('data-htmx'), function () { htmxLate = contentLoaded; });
  load(me.getAttribute('data-sse'), function () {
    if (htmxLate) document.dispatchEvent(new Event('DOMContentLoaded'));
  });
})();
