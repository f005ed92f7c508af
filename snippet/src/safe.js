// Wraps a function so that nothing it throws can reach the host page.
export const safe = (f) =>
  function () {
    try {
      return f.apply(this, arguments)
    } catch (e) {}
  }
