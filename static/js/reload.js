/* A page that refreshes itself without JavaScript (a <noscript> meta refresh) and is kept up to
   date by htmx with it: browsers where htmx does not run (no EventSource, e.g. IE11: boot.js
   does not load it) reload it instead, after the seconds in this script's data-refresh.
   ES5 only: this file must parse in Chrome 49 / Firefox 52 (and IE11). */
(function () {
  'use strict';
  if (window.EventSource || !document.querySelector) return;
  var me = document.querySelector('script[data-refresh]');
  var seconds = me ? parseInt(me.getAttribute('data-refresh'), 10) : 0;
  if (seconds > 0) setTimeout(function () { window.location.reload(); }, seconds * 1000);
})();
