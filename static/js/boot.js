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
  load(me.getAttribute('data-htmx'));
  load(me.getAttribute('data-sse'));
})();
