// Reads the configuration from the script tag's data- attributes.
// `el` is the <script> element (or any object with `src` and `dataset`),
// `nav` is `navigator` (or a stand-in with `globalPrivacyControl` and `doNotTrack`).
export function parseConfig(el, nav) {
  const d = el.dataset
  const days = d.window | 0 // whole days
  return {
    // the tracker: scheme, host and port of the script's src (http and https only)
    origin: (/^https?:\/\/[^/?#]+/.exec(el.src) || [''])[0],
    merchant: d.merchant || '',
    partner: d.partner || '',
    days: days > 0 ? days : 30,
    // false: keep nothing on the device (cookieless mode, or Global Privacy Control honoured)
    // (and Do Not Track, when the site opts in with data-dnt="honor", as HONOR_DNT does server-side)
    store:
      d.storage != 'none' &&
      (d.gpc == 'ignore' || nav.globalPrivacyControl !== true) &&
      (d.dnt != 'honor' || nav.doNotTrack != '1'),
  }
}
