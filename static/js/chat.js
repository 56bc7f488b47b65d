/* The chat page with JavaScript (the page works without it: forms post, pages refresh).
   - 422/429 fragments (form errors, the wait) are swapped in, where the server retargets them;
   - after a question is sent, its box is emptied;
   - a streaming answer that receives nothing for 10 s shows its link to the plain page
     (a filtering proxy or antivirus may be holding the stream back);
   - the wait message counts down each second;
   - a browser that cannot stream (no EventSource, e.g. IE11: htmx is not loaded there) reloads
     the page while an answer is pending, as the <noscript> refresh does without JavaScript,
     but never over a question the student is typing (then it offers the link instead).
   ES5 only: this file must parse in Chrome 49 / Firefox 52 (and IE11). */
(function () {
  'use strict';
  if (!document.addEventListener || !document.querySelectorAll) return;
  var FALLBACK_MS = 10000;

  function closest(el, className) {
    while (el && el.nodeType === 1) {
      if ((' ' + el.className + ' ').indexOf(' ' + className + ' ') >= 0) return el;
      el = el.parentNode;
    }
    return null;
  }

  function showFallback(answer) {
    var link = answer.querySelector('.answer-fallback');
    if (link) link.removeAttribute('hidden');
  }

  function watchAnswers(root) {
    var answers = (root || document).querySelectorAll('.answer.pending');
    for (var i = 0; i < answers.length; i++) {
      (function (answer) {
        if (answer.getAttribute('data-watched')) return;
        answer.setAttribute('data-watched', '1');
        setTimeout(function () {
          if (!answer.getAttribute('data-alive') && document.body.contains(answer)) showFallback(answer);
        }, FALLBACK_MS);
      })(answers[i]);
    }
  }

  function countDown(root) {
    var waits = (root || document).querySelectorAll('.wait[data-wait]');
    for (var i = 0; i < waits.length; i++) {
      (function (box) {
        if (box.getAttribute('data-counting')) return;
        box.setAttribute('data-counting', '1');
        var left = parseInt(box.getAttribute('data-wait'), 10) || 0;
        var text = box.querySelector('.wait-text');
        var template = text ? text.getAttribute('data-wait-text') : null;
        var timer = setInterval(function () {
          left -= 1;
          if (left <= 0) {
            clearInterval(timer);
            if (box.parentNode) box.parentNode.removeChild(box);
            return;
          }
          if (text && template) text.textContent = template.replace('{s}', String(left));
        }, 1000);
      })(waits[i]);
    }
  }

  function reloadWhilePending() {
    if (window.EventSource) return;
    var turns = document.getElementById('turns');
    var seconds = turns ? parseInt(turns.getAttribute('data-refresh'), 10) : 0;
    if (!seconds || !document.querySelector('.answer.pending')) return;
    var check = function () {
      var box = document.querySelector('textarea[name="question"]');
      if (!box || !box.value) {
        window.location.reload();
        return;
      }
      var answers = document.querySelectorAll('.answer.pending');
      for (var i = 0; i < answers.length; i++) showFallback(answers[i]);
      setTimeout(check, seconds * 1000);
    };
    setTimeout(check, seconds * 1000);
  }

  document.addEventListener('htmx:beforeSwap', function (evt) {
    var xhr = evt.detail && evt.detail.xhr;
    if (xhr && (xhr.status === 422 || xhr.status === 429) && xhr.getResponseHeader('HX-Retarget')) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  document.addEventListener('htmx:afterRequest', function (evt) {
    var elt = evt.detail && evt.detail.elt;
    var xhr = evt.detail && evt.detail.xhr;
    if (!elt || !xhr || xhr.status !== 200 || elt.tagName !== 'FORM') return;
    var box = elt.querySelector('textarea[name="question"]');
    if (box) box.value = '';
  });

  // The server sends a status event as soon as a stream opens: any event means it flows.
  document.addEventListener('htmx:sseOpen', function (evt) {
    var answer = closest(evt.target, 'answer');
    var source = evt.detail && evt.detail.source;
    if (!answer || !source) return;
    var alive = function () { answer.setAttribute('data-alive', '1'); };
    source.addEventListener('status', alive);
    source.addEventListener('token', alive);
    source.addEventListener('done', alive);
  });

  document.addEventListener('htmx:sseError', function (evt) {
    var source = evt.detail && evt.detail.source;
    // Closed for good (204: finished while we were away, or an error status): stop htmx from
    // reconnecting in a loop and offer the plain page, which shows the stored answer.
    if (source && source.readyState === 2) {
      var answer = closest(evt.target, 'answer');
      if (answer) {
        answer.removeAttribute('data-sse-connect');
        showFallback(answer);
      }
    }
  });

  document.addEventListener('htmx:load', function (evt) {
    watchAnswers(evt.target);
    countDown(evt.target);
  });

  function start() {
    watchAnswers(document);
    countDown(document);
    reloadWhilePending();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
