/* The print button on the login cards page: hidden without JavaScript (Ctrl+P still works),
   shown and wired to window.print() here. ES5 only: must parse in Chrome 49 / Firefox 52. */
(function () {
  'use strict';
  if (!document.querySelectorAll || typeof window.print !== 'function') return;
  var buttons = document.querySelectorAll('[data-print]');
  function print() {
    window.print();
  }
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].removeAttribute('hidden');
    buttons[i].addEventListener('click', print);
  }
})();
