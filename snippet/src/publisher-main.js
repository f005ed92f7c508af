// Entry point of p.js, which s.js loads on publisher pages: the config is the one s.js read,
// left on the <script> element it created (loaded any other way, p.js does nothing).
import { publisher } from './publisher.js'
import { safe } from './safe.js'

safe(() => publisher(document.currentScript.c))()
