// Wraps a function so that nothing it throws can reach the host page.
export const safe =
  (f) =>
  (...args) => {
    try {
      return f(...args)
    } catch (e) {}
  }
