'use strict';
'require baseclass';
'require spin.graph as graph';
'require spin.common as common';

/*
 * A device's traffic over time as an inline SVG: one bar pair per history
 * bucket (upload above the axis, download below), so a quiet minute reads
 * as a gap and a burst as a spike. The agent sends the buckets already
 * summed (history {bucket_seconds, points:[{t, bytes_out, bytes_in}]}).
 */

var S = graph.svg;

function hhmm(t) {
	var d = new Date(t * 1000);
	return ('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2);
}

return baseclass.extend({
	/* history reply -> SVG element; width in CSS pixels; span: seconds the
	 * x axis covers (bars sit at the right end, a new device's few minutes
	 * do not stretch over the whole width) */
	timeline: function(history, width, span) {
		var W = Math.max(260, width || 600), H = 150, left = 58, right = 8, top = 14, bottom = 22;
		var pts = ((history && history.points) || []).slice();
		if (history && history.current && typeof(history.current) == 'object')
			pts.push({ t: (pts.length ? pts[pts.length - 1].t + (history.bucket_seconds || 60) : Date.now() / 1000),
				bytes_out: history.current.bytes_out || 0, bytes_in: history.current.bytes_in || 0, open: true });
		var svg = S('svg', { 'class': 'spin-timeline', viewBox: '0 0 ' + W + ' ' + H,
			width: W, height: H, role: 'img', 'aria-label': _('Traffic over time') });
		if (!pts.length) {
			svg.appendChild(S('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', 'class': 'spin-label' },
				[ _('No history yet') ]));
			return svg;
		}
		var maxOut = 1, maxIn = 1;
		pts.forEach(function(p) {
			maxOut = Math.max(maxOut, p.bytes_out || 0);
			maxIn = Math.max(maxIn, p.bytes_in || 0);
		});
		var plotH = H - top - bottom;
		var axis = top + plotH * maxOut / (maxOut + maxIn);
		var scale = plotH / (maxOut + maxIn);
		var slots = Math.max(pts.length, Math.round((span || 0) / ((history && history.bucket_seconds) || 60)));
		var first = slots - pts.length;
		var bw = (W - left - right) / slots;

		svg.appendChild(S('line', { x1: left, x2: W - right, y1: axis, y2: axis, 'class': 'spin-axis' }));
		svg.appendChild(S('text', { x: left - 4, y: top + 8, 'text-anchor': 'end', 'class': 'spin-tick' },
			[ '\u2191 ' + common.bytes(maxOut) ]));
		svg.appendChild(S('text', { x: left - 4, y: H - bottom, 'text-anchor': 'end', 'class': 'spin-tick' },
			[ '\u2193 ' + common.bytes(maxIn) ]));

		pts.forEach(function(p, i) {
			var x = left + (first + i) * bw, w = Math.max(1, bw - 1);
			var hu = (p.bytes_out || 0) * scale, hd = (p.bytes_in || 0) * scale;
			var tip = '%s  \u2191 %s  \u2193 %s'.format(hhmm(p.t), common.bytes(p.bytes_out), common.bytes(p.bytes_in));
			var g = S('g', { 'class': 'spin-bar' + (p.open ? ' spin-bar-open' : ''), 'data-t': p.t },
				[ S('title', {}, [ tip ]) ]);
			g.appendChild(S('rect', { x: x.toFixed(1), y: (axis - hu).toFixed(1), width: w.toFixed(1),
				height: Math.max(0, hu).toFixed(1), 'class': 'spin-up' }));
			g.appendChild(S('rect', { x: x.toFixed(1), y: axis.toFixed(1), width: w.toFixed(1),
				height: Math.max(0, hd).toFixed(1), 'class': 'spin-down' }));
			svg.appendChild(g);
		});

		/* four time labels are enough on a phone and on a desktop */
		var step = (history && history.bucket_seconds) || 60, lastT = pts[pts.length - 1].t;
		var every = Math.max(1, Math.ceil(slots / 4));
		for (var j = (slots - 1) % every; j < slots; j += every)
			svg.appendChild(S('text', { x: (left + (j + 1) * bw).toFixed(1), y: H - 6, 'class': 'spin-tick',
				'text-anchor': j > slots * 0.8 ? 'end' : 'middle' },
				[ hhmm(lastT - (slots - 1 - j) * step) ]));
		return svg;
	}
});
