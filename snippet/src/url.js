// Query-string editing on plain strings, so that every other parameter keeps its exact
// spelling (URLSearchParams would re-encode the whole query). `name` is a plain word.

// The raw (still encoded) value of the first `name` parameter, or undefined when it is absent.
export const getParam = (href, name) => (RegExp('[?&]' + name + '=([^&#]*)').exec(href) || [])[1]

// `href` without its first `name` parameter (the one getParam reads); the other parameters
// and the hash are kept as they are.
export const stripParam = (href, name) =>
  href.replace(RegExp('([?&])' + name + '=[^&#]*&?'), '$1').replace(/[?&](#|$)/, '$1')

// `href` with `name=value` added before the hash, unless a `name` parameter is already there:
// the query (if any) and the hash (if any) are found together, the first `?` before any `#`.
export const addParam = (href, name, value) =>
  getParam(href, name) != null
    ? href
    : href.replace(/(\?[^#]*)?(#|$)/, (_, query = '?', hash) => query + (query[1] ? '&' : '') + name + '=' + encodeURIComponent(value) + hash)
