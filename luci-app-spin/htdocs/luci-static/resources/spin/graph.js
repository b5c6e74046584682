'use strict';
'require baseclass';

/*
 * Devices and the domains they talk to, as an inline SVG drawn by a small
 * force layout (Fruchterman-Reingold: every pair pushes apart, every edge
 * pulls together, a weak pull to the centre keeps idle devices in view,
 * and a cooling step size makes it settle). About 60 nodes after grouping,
 * so the O(n^2) pass costs well under a millisecond per step.
 *
 * Positions are kept by node id between updates: a poll moves nodes only a
 * little (low starting temperature), new nodes start next to what they
 * talk to, and the first layout starts from fixed places, so the picture
 * is the same for the same data.
 *
 * Colours come from CSS classes and custom properties (spin.css), so LuCI's
 * dark theme and prefers-color-scheme restyle it without code.
 */

var NS = 'http://www.w3.org/2000/svg';

/* more devices than this: devices on a ring, destinations inside it */
var RING = 8;

function S(tag, attrs, children) {
	var el = document.createElementNS(NS, tag);
	for (var k in attrs)
		if (attrs[k] != null)
			el.setAttribute(k, attrs[k]);
	(children || []).forEach(function(c) {
		el.appendChild(typeof(c) == 'string' ? document.createTextNode(c) : c);
	});
	return el;
}

/* a stable small number from a string, for fixed starting places */
function hash(s) {
	var h = 7;
	for (var i = 0; i < s.length; i++)
		h = (h * 31 + s.charCodeAt(i)) % 100003;
	return h;
}

/* k points spread evenly by length (not by angle) around an ellipse,
 * from the top clockwise: on a phone's tall ring the ends stay roomy */
function ellipse(cx, cy, rx, ry, k) {
	var steps = 720, len = [ 0 ], px = cx, py = cy - ry, i;
	for (i = 1; i <= steps; i++) {
		var a = 2 * Math.PI * i / steps - Math.PI / 2;
		var x = cx + rx * Math.cos(a), y = cy + ry * Math.sin(a);
		len.push(len[i - 1] + Math.sqrt((x - px) * (x - px) + (y - py) * (y - py)));
		px = x; py = y;
	}
	var out = [], j = 0;
	for (i = 0; i < k; i++) {
		var want = len[steps] * i / k;
		while (len[j] < want)
			j++;
		var b = 2 * Math.PI * j / steps - Math.PI / 2;
		out.push([ cx + rx * Math.cos(b), cy + ry * Math.sin(b) ]);
	}
	return out;
}

function shorten(s, n) {
	s = String(s);
	return s.length > n ? s.slice(0, n - 1) + '\u2026' : s;
}

var Graph = baseclass.extend({
	__init__: function(opts) {
		opts = opts || {};
		this.onselect = opts.onselect || null;
		this.pos = {};
		this.selected = null;
		this.width = 800;
		this.height = 500;
		this.svg = S('svg', { 'class': 'spin-graph', role: 'img',
			'aria-label': _('Devices and the destinations they talk to') });
		this.edgeLayer = S('g', { 'class': 'spin-edges' });
		this.nodeLayer = S('g', { 'class': 'spin-nodes' });
		this.labelLayer = S('g', { 'class': 'spin-labels' });   /* above every node */
		this.svg.appendChild(this.edgeLayer);
		this.svg.appendChild(this.nodeLayer);
		this.svg.appendChild(this.labelLayer);
		this.model = { nodes: [], edges: [] };
	},

	element: function() {
		return this.svg;
	},

	/* the canvas: as wide as its box; a narrow one with many devices
	 * grows downwards (a phone scrolls) so their names keep apart */
	size: function(devices) {
		var box = this.svg.parentNode;
		var w = (box && box.clientWidth) || 800;
		var h = Math.round(Math.max(320, Math.min(window.innerHeight * 0.62, w * 0.75)));
		if (w < 600 && devices > RING)
			h = Math.max(h, devices * 34 + 80);
		return [ Math.max(280, w), h ];
	},

	radius: function(n, maxBytes) {
		if (n.kind == 'device')
			return 13;
		return 5 + 13 * Math.sqrt((n.bytes || 0) / (maxBytes || 1));
	},

	update: function(model) {
		var wh = this.size(model.nodes.filter(function(n) { return n.kind == 'device'; }).length);
		var W = wh[0], H = wh[1];
		var resized = (W != this.width || H != this.height);
		var first = Object.keys(this.pos).length == 0;
		this.width = W;
		this.height = H;
		this.model = model;
		var nodes = model.nodes, edges = model.edges, i;
		var maxBytes = 1, maxEdge = 1;
		for (i = 0; i < nodes.length; i++)
			if (nodes[i].kind != 'device')
				maxBytes = Math.max(maxBytes, nodes[i].bytes || 0);
		for (i = 0; i < edges.length; i++)
			maxEdge = Math.max(maxEdge, edges[i].bytes);

		this.place(nodes, edges, W, H);
		this.layout(nodes, edges, W, H, first || resized ? 220 : 40, first ? 0.12 : 0.03, maxEdge);
		this.draw(nodes, edges, maxBytes, maxEdge);
	},

	/*
	 * Starting places. A few devices float freely like everything else.
	 * Many devices (more than RING) sit on a fixed ring around the edge,
	 * with the internet inside it: a domain that one device uses settles
	 * next to that device, one that many use moves to the middle, and
	 * every device stays where the owner found it last time.
	 */
	place: function(nodes, edges, W, H) {
		var cx = W / 2, cy = H / 2, R = Math.min(W, H) / 2;
		var devices = nodes.filter(function(n) { return n.kind == 'device'; });
		var ring = devices.length > RING;
		var byId = {}, i;
		nodes.forEach(function(x) { byId[x.id] = x; x.pinned = false; });
		var spots = ring ? ellipse(cx, cy, W / 2 - 80, H / 2 - 34, devices.length) : null;
		devices.forEach(function(n, k) {
			var ad = 2 * Math.PI * k / Math.max(1, devices.length) - Math.PI / 2;
			if (ring) {
				n.x = spots[k][0];
				n.y = spots[k][1];
				n.pinned = true;
			}
			else if (this.pos[n.id]) {
				n.x = this.pos[n.id][0];
				n.y = this.pos[n.id][1];
			}
			else {
				n.x = cx + R * 0.35 * Math.cos(ad);
				n.y = cy + R * 0.35 * Math.sin(ad);
			}
		}, this);
		/* a new group starts at the traffic-weighted middle of its devices */
		var sum = {};
		for (i = 0; i < edges.length; i++) {
			var d = byId[edges[i].from];
			if (!d)
				continue;
			var acc = sum[edges[i].to] = sum[edges[i].to] || [ 0, 0, 0 ];
			var w = Math.sqrt(edges[i].bytes) + 1;
			acc[0] += d.x * w; acc[1] += d.y * w; acc[2] += w;
		}
		nodes.forEach(function(n) {
			if (n.kind == 'device')
				return;
			var p = this.pos[n.id], a = (hash(n.id) % 360) * Math.PI / 180;
			if (p) {
				n.x = p[0]; n.y = p[1];
			}
			else if (sum[n.id]) {
				var mx = sum[n.id][0] / sum[n.id][2], my = sum[n.id][1] / sum[n.id][2];
				n.x = cx + (mx - cx) * 0.75 + 12 * Math.cos(a);
				n.y = cy + (my - cy) * 0.75 + 12 * Math.sin(a);
			}
			else {
				n.x = cx + R * 0.5 * Math.cos(a);
				n.y = cy + R * 0.5 * Math.sin(a);
			}
		}, this);
	},

	layout: function(nodes, edges, W, H, steps, t0, maxEdge) {
		var n = nodes.length;
		if (!n)
			return;
		var byId = {};
		nodes.forEach(function(x) { byId[x.id] = x; });
		/* L: the length an edge wants; nodes further than 3L apart ignore
		 * each other, so the weak pull to the centre can gather them */
		var L = Math.max(45, Math.min(0.6 * Math.sqrt(W * H / n), 150));
		var mx = 70, my = 24, t = t0 * Math.min(W, H);
		var cx = W / 2, cy = H / 2;
		for (var s = 0; s < steps; s++) {
			var i, j, a, b, dx, dy, d, f;
			for (i = 0; i < n; i++) {
				nodes[i].dx = 0;
				nodes[i].dy = 0;
			}
			for (i = 0; i < n; i++) {
				a = nodes[i];
				for (j = i + 1; j < n; j++) {
					b = nodes[j];
					dx = a.x - b.x; dy = a.y - b.y;
					d = Math.sqrt(dx * dx + dy * dy) || 0.01;
					if (d > 3 * L)
						continue;
					f = L * L / d * (1 - d / (3 * L));
					if (a.kind == 'device' && b.kind == 'device')
						f *= 2;   /* devices stand apart, each with its cloud */
					a.dx += dx / d * f; a.dy += dy / d * f;
					b.dx -= dx / d * f; b.dy -= dy / d * f;
				}
			}
			for (i = 0; i < edges.length; i++) {
				a = byId[edges[i].from]; b = byId[edges[i].to];
				if (!a || !b)
					continue;
				dx = a.x - b.x; dy = a.y - b.y;
				d = Math.sqrt(dx * dx + dy * dy) || 0.01;
				/* every edge wants the same length: its width, not its
				 * length, says how much it carries, and a short heavy edge
				 * would hide under its nodes */
				f = (d - L) * 0.5;
				a.dx -= dx / d * f; a.dy -= dy / d * f;
				b.dx += dx / d * f; b.dy += dy / d * f;
			}
			for (i = 0; i < n; i++) {
				a = nodes[i];
				if (a.pinned)
					continue;
				a.dx -= (a.x - cx) * 0.04;
				a.dy -= (a.y - cy) * 0.04 * W / H;
				d = Math.sqrt(a.dx * a.dx + a.dy * a.dy) || 0.01;
				var step = Math.min(d, t);
				a.x = Math.max(mx, Math.min(W - mx, a.x + a.dx / d * step));
				/* a device's name sits below it: keep room for it */
				a.y = Math.max(my, Math.min(H - (a.kind == 'device' ? 36 : my), a.y + a.dy / d * step));
			}
			t = Math.max(t * 0.975, 0.5);
		}
		for (var m = 0; m < n; m++)
			this.pos[nodes[m].id] = [ nodes[m].x, nodes[m].y ];
	},

	draw: function(nodes, edges, maxBytes, maxEdge) {
		var self = this, W = this.width, H = this.height;
		var byId = {};
		nodes.forEach(function(x) { byId[x.id] = x; });
		this.svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
		this.svg.setAttribute('width', W);
		this.svg.setAttribute('height', H);

		while (this.edgeLayer.firstChild)
			this.edgeLayer.removeChild(this.edgeLayer.firstChild);
		while (this.nodeLayer.firstChild)
			this.nodeLayer.removeChild(this.nodeLayer.firstChild);
		while (this.labelLayer.firstChild)
			this.labelLayer.removeChild(this.labelLayer.firstChild);

		edges.slice().sort(function(a, b) { return a.bytes - b.bytes; }).forEach(function(e) {
			var a = byId[e.from], b = byId[e.to];
			if (!a || !b)
				return;
			var id = 'e:' + e.from + '|' + e.to;
			var cls = 'spin-edge';
			if (a.state == 'blocked' || a.state == 'quarantined' || b.state == 'blocked' || e.blocked)
				cls += ' spin-edge-blocked';
			if (self.selected && (e.from == self.selected || e.to == self.selected || id == self.selected))
				cls += ' spin-edge-selected';
			var ends = { x1: a.x.toFixed(1), y1: a.y.toFixed(1), x2: b.x.toFixed(1), y2: b.y.toFixed(1) };
			var line = S('line', Object.assign({
				'class': cls,
				'stroke-width': (1 + 7 * Math.sqrt(e.bytes / maxEdge)).toFixed(1),
				'stroke-opacity': (0.35 + 0.65 * Math.sqrt(e.bytes / maxEdge)).toFixed(2),
				'data-id': id, 'data-from': e.from, 'data-to': e.to, 'data-bytes': e.bytes
			}, ends), [ S('title', {}, [ '%s \u2192 %s'.format(a.label, b.label) ]) ]);
			/* a thin line is hard to hit with a finger: a wide invisible one on top */
			var hit = S('line', Object.assign({ 'class': 'spin-edge-hit', 'data-id': id }, ends),
				[ S('title', {}, [ '%s \u2192 %s'.format(a.label, b.label) ]) ]);
			hit.addEventListener('click', function(ev) {
				ev.preventDefault();
				self.select(id);
			});
			self.edgeLayer.appendChild(line);
			self.edgeLayer.appendChild(hit);
		});

		/* labels: every device's below it, then the heaviest groups' to the
		 * right or left of them where that overlaps nothing already placed;
		 * the rest say who they are on hover (<title>) */
		var boxes = [], nodeBoxes = [];
		var free = function(b, list) {
			for (var i = 0; i < list.length; i++) {
				var o = list[i];
				if (b[0] < o[2] && o[0] < b[2] && b[1] < o[3] && o[1] < b[3])
					return false;
			}
			return b[0] >= 0 && b[2] <= W && b[1] >= 0 && b[3] <= H;
		};
		var labels = {};
		nodes.forEach(function(n) {
			var r = self.radius(n, maxBytes);
			nodeBoxes.push([ n.x - r, n.y - r, n.x + r, n.y + r ]);
		});
		/* a device is always named: below it, else above, right or left
		 * of it, whichever overlaps no other name (names are drawn above
		 * nodes, with a halo); below when all do */
		nodes.filter(function(n) { return n.kind == 'device'; }).forEach(function(n) {
			var text = shorten(n.label, 22), w = text.length * 8 + 4, r = self.radius(n, maxBytes);
			var places = [
				[ [ n.x - w / 2, n.y + r, n.x + w / 2, n.y + r + 16 ], 0, r + 13, 'middle' ],
				[ [ n.x - w / 2, n.y - r - 16, n.x + w / 2, n.y - r ], 0, -r - 4, 'middle' ],
				[ [ n.x + r + 2, n.y - 8, n.x + r + 4 + w, n.y + 8 ], r + 4, 4, 'start' ],
				[ [ n.x - r - 4 - w, n.y - 8, n.x - r - 2, n.y + 8 ], -r - 4, 4, 'end' ]
			];
			var p = places.filter(function(c) { return free(c[0], boxes); })[0] || places[0];
			labels[n.id] = { text: text, x: p[1], y: p[2], anchor: p[3] };
			boxes.push(p[0]);
		});
		var all = boxes.concat(nodeBoxes);
		var budget = W < 500 ? 10 : 30;
		nodes.filter(function(n) { return n.kind != 'device'; })
			.sort(function(a, b) { return b.bytes - a.bytes; })
			.slice(0, budget).forEach(function(n) {
				var text = shorten(n.label, 26), w = text.length * 7.2 + 6, r = self.radius(n, maxBytes);
				var right = [ n.x + r + 2, n.y - 8, n.x + r + 2 + w, n.y + 8 ];
				var left = [ n.x - r - 2 - w, n.y - 8, n.x - r - 2, n.y + 8 ];
				if (free(right, all)) {
					all.push(right);
					labels[n.id] = { text: text, x: r + 4, y: 4, anchor: 'start' };
				}
				else if (free(left, all)) {
					all.push(left);
					labels[n.id] = { text: text, x: -r - 4, y: 4, anchor: 'end' };
				}
			});

		nodes.forEach(function(n) {
			var r = self.radius(n, maxBytes);
			var cls = 'spin-node spin-' + n.kind + ' spin-state-' + (n.state || 'normal');
			if (n.id == self.selected)
				cls += ' spin-selected';
			var g = S('g', { 'class': cls, transform: 'translate(' + n.x.toFixed(1) + ',' + n.y.toFixed(1) + ')',
				'data-id': n.id, 'data-label': n.label, 'data-state': n.state || 'normal',
				'data-bytes': n.bytes || 0, tabindex: 0, role: 'button', 'aria-label': n.label });
			g.appendChild(S('title', {}, [ n.label ]));
			if (n.kind == 'device')
				g.appendChild(S('rect', { x: -r, y: -r, width: 2 * r, height: 2 * r, rx: 4 }));
			else
				g.appendChild(S('circle', { r: r.toFixed(1) }));
			var lb = labels[n.id];
			if (lb)
				self.labelLayer.appendChild(S('text', { x: (n.x + lb.x).toFixed(1), y: (n.y + lb.y).toFixed(1),
					'text-anchor': lb.anchor, 'class': 'spin-label' + (n.kind == 'device' ? ' spin-label-device' : ''),
					'data-for': n.id }, [ lb.text ]));
			var pick = function(ev) {
				if (ev.type == 'keydown' && ev.key != 'Enter' && ev.key != ' ')
					return;
				ev.preventDefault();
				self.select(n.id);
			};
			g.addEventListener('click', pick);
			g.addEventListener('keydown', pick);
			self.nodeLayer.appendChild(g);
		});
	},

	/* select a node (by id) or an edge ('e:' + from + '|' + to) */
	select: function(id) {
		this.selected = id;
		var found = null;
		this.model.nodes.forEach(function(n) { if (n.id == id) found = n; });
		this.model.edges.forEach(function(e) { if ('e:' + e.from + '|' + e.to == id) found = e; });
		Array.prototype.forEach.call(this.nodeLayer.childNodes, function(g) {
			g.classList.toggle('spin-selected', g.getAttribute('data-id') == id);
		});
		Array.prototype.forEach.call(this.edgeLayer.querySelectorAll('.spin-edge'), function(l) {
			l.classList.toggle('spin-edge-selected', l.getAttribute('data-id') == id ||
				l.getAttribute('data-from') == id || l.getAttribute('data-to') == id);
		});
		if (this.onselect)
			this.onselect(found);
	}
});

return baseclass.extend({
	Graph: Graph,
	svg: S
});
