'use strict';
'require rpc';
'require poll';
'require ui';
'require dom';
'require spin.common as common';
'require spin.chart as chart';
'require spin.actions as actions';

/*
 * Devices: one row per device with what it does now and today, and the
 * owner's actions. "Timeline" opens the device's traffic per minute from
 * the agent's history rings.
 */

var callStatus = rpc.declare({ object: 'spin', method: 'status', expect: { '': {} } });
var callStatusStrict = rpc.declare({ object: 'spin', method: 'status', expect: { '': {} }, reject: true });
/* devices come in pages (at most 150 a reply): common.allPages joins them */
var callDevices = rpc.declare({ object: 'spin', method: 'devices', params: [ 'limit', 'offset' ] });
var DEVICES_PAGE = 150;
var callGraph = rpc.declare({ object: 'spin', method: 'graph', expect: { '': { nodes: [], edges: [] } } });
var callBlocks = rpc.declare({ object: 'spin', method: 'blocks', expect: { '': { blocks: [], quarantines: [] } } });
/* without seconds the agent captures a minute, or less when capture_seconds_max says so */
var callCaptureStart = rpc.declare({ object: 'spin', method: 'capture_start', params: [ 'mac' ], reject: true });
var callHistory = rpc.declare({ object: 'spin', method: 'history', params: [ 'mac', 'minutes' ], expect: { '': { points: [] } } });

function minutesToday() {
	var d = new Date();
	return Math.max(1, Math.min(1440, d.getHours() * 60 + d.getMinutes() + 1));
}

function sumHistory(h) {
	var up = 0, down = 0;
	((h && h.points) || []).concat((h && h.coarse) || []).forEach(function(p) {
		up += p.bytes_out || 0;
		down += p.bytes_in || 0;
	});
	if (h && h.current) {
		up += h.current.bytes_out || 0;
		down += h.current.bytes_in || 0;
	}
	return [ up, down ];
}

/* the reason and end of a block or quarantine, under the state badge */
function stateLine(text) {
	return text ? E('div', { 'class': 'spin-muted spin-state-detail' }, [ text ]) : '';
}

return actions.View.extend({
	blockNote: _('blocked from the device list'),

	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(common.allPages(callDevices, 'devices', DEVICES_PAGE), []),
			L.resolveDefault(callGraph(), { nodes: [], edges: [] }),
			L.resolveDefault(callBlocks(), { blocks: [], quarantines: [] }),
			L.resolveDefault(rpc.list('spin'), {})
		]);
	},

	render: function(data) {
		this.methods = common.methods(data[4]);
		this.open = null;
		this.today = {};
		this.todayAt = 0;
		this.data = { devices: data[1], graph: data[2], blocks: data[3] };

		var node = E('div', { 'class': 'spin-view', 'id': 'spin-devices' }, [
			E('link', { 'rel': 'stylesheet', 'href': L.resource('spin/spin.css') }),
			E('h2', {}, [ _('Devices') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('Every device the router has seen, what it sends and receives now and today, and where most of it goes.')
			]),
			E('div', { 'class': 'spin-toolbar' }, [
				E('span', { 'class': 'spin-summary', 'id': 'spin-link', 'role': 'status' }, [])
			]),
			E('table', { 'class': 'spin-table', 'id': 'spin-device-table' }, [
				E('thead', {}, [ E('tr', {}, [
					E('th', {}, [ _('Name') ]), E('th', {}, [ _('MAC') ]), E('th', {}, [ _('Addresses') ]),
					E('th', {}, [ _('Now') ]), E('th', {}, [ _('Today') ]), E('th', {}, [ _('Top destinations') ]),
					E('th', {}, [ _('State') ]), E('th', {}, [ _('Actions') ])
				]) ]),
				E('tbody', {}, [ E('tr', {}, [ E('td', { 'colspan': 8, 'class': 'spin-empty' }, [ _('Collecting data…') ]) ]) ])
			])
		]);
		window.requestAnimationFrame(L.bind(function() { this.renderTable(this.data); this.refreshToday(); }, this));
		poll.add(L.bind(this.refresh, this), Math.max(1, +data[0].scan_interval || L.env.pollinterval || 5));
		return node;
	},

	refresh: function() {
		return Promise.all([
			callStatusStrict(),
			L.resolveDefault(common.allPages(callDevices, 'devices', DEVICES_PAGE), null),
			L.resolveDefault(callGraph(), null),
			L.resolveDefault(callBlocks(), null)
		]).then(L.bind(function(res) {
			dom.content(document.getElementById('spin-link'), []);
			this.data = { devices: res[1] || this.data.devices, graph: res[2] || this.data.graph,
				blocks: res[3] || this.data.blocks };
			this.renderTable(this.data);
			if (Date.now() - this.todayAt > 60000)
				return this.refreshToday();
		}, this)).catch(L.bind(function(err) {
			dom.content(document.getElementById('spin-link'), [ E('em', {}, [ common.failure(_('Updating the table'), err) ]) ]);
		}, this));
	},

	/* bytes since midnight: one history call per device, once a minute */
	refreshToday: function() {
		this.todayAt = Date.now();
		var minutes = minutesToday();
		return Promise.all(this.data.devices.map(function(d) {
			return L.resolveDefault(callHistory(d.mac, minutes), null);
		})).then(L.bind(function(hs) {
			for (var i = 0; i < hs.length && i < this.data.devices.length; i++)
				if (hs[i])
					this.today[this.data.devices[i].mac] = sumHistory(hs[i]);
			this.renderTable(this.data);
		}, this));
	},

	names: function(graph) {
		var out = {};
		((graph && graph.nodes) || []).forEach(function(n) {
			if (n.kind == 'endpoint')
				out[n.id] = common.endpointGroup(n);
		});
		return out;
	},

	renderTable: function(data) {
		var tbody = document.querySelector('#spin-device-table tbody');
		if (!tbody)
			return;
		var idx = common.blockIndex(data.blocks), names = this.names(data.graph), rows = [];
		var devices = data.devices.slice().sort(function(a, b) {
			return (b.rate_out + b.rate_in) - (a.rate_out + a.rate_in) ||
				common.deviceLabel(a).localeCompare(common.deviceLabel(b));
		});
		if (!devices.length)
			rows.push(E('tr', {}, [ E('td', { 'colspan': 8, 'class': 'spin-empty' }, [ _('No devices seen yet.') ]) ]));

		devices.forEach(L.bind(function(d) {
			var label = common.deviceLabel(d), state = common.deviceState(d, idx);
			var today = this.today[d.mac];
			/* the open minute and the one before: a minute that just began
			 * has no top of its own yet */
			var recent = (d.recent && d.recent.top) || (d.bucket && d.bucket.top) || [];
			var recentNames = (d.recent && d.recent.names) || {};
			var top = recent.map(function(t) {
				return names[t[0]] || recentNames[t[0]] || t[0];
			}).filter(function(v, i, a) { return a.indexOf(v) == i; }).slice(0, 3);
			var buttons = [
				E('button', { 'class': 'btn cbi-button', 'data-action': 'timeline',
					'aria-expanded': this.open == d.mac ? 'true' : 'false',
					'click': ui.createHandlerFn(this, 'handleTimeline', d.mac) }, [ _('Timeline') ])
			].concat(this.renameButton(d.mac, label), this.captureButton(d.mac, label), this.deviceButtons(d, idx, label));

			rows.push(E('tr', { 'data-mac': d.mac, 'class': this.open == d.mac ? 'spin-open' : '' }, [
				E('td', { 'data-title': _('Name') }, [ E('strong', {}, [ label ]),
					d.hostname && d.hostname != label ? E('div', { 'class': 'spin-muted' }, [ d.hostname ]) : '' ]),
				E('td', { 'data-title': _('MAC'), 'class': 'spin-mono spin-nowrap' }, [ d.mac ]),
				E('td', { 'data-title': _('Addresses'), 'class': 'spin-mono' }, [ (d.ips || []).join(' ') || '-' ]),
				E('td', { 'data-title': _('Now'), 'class': 'spin-num' }, [
					'\u2191 %s \u2193 %s'.format(common.rate(d.rate_out), common.rate(d.rate_in)) ]),
				E('td', { 'data-title': _('Today'), 'class': 'spin-num' }, [
					today ? '\u2191 %s \u2193 %s'.format(common.bytes(today[0]), common.bytes(today[1])) : '\u2026' ]),
				E('td', { 'data-title': _('Top destinations') }, [ top.join(', ') || '-' ]),
				E('td', { 'data-title': _('State') }, [
					E('span', { 'class': 'spin-badge spin-state-' + state }, [ common.stateText(state) ]),
					stateLine(common.stateDetail(d, idx)) ]),
				E('td', { 'data-title': '' }, [ E('div', { 'class': 'spin-actions' }, buttons) ])
			]));
			if (this.open == d.mac)
				rows.push(E('tr', { 'class': 'spin-open spin-timeline-row', 'data-for': d.mac }, [
					E('td', { 'colspan': 8, 'id': 'spin-timeline', 'data-title': '' }, [ this.chart || E('em', {}, [ _('Loading…') ]) ])
				]));
		}, this));
		dom.content(tbody, rows);
	},

	/* up to a minute of the device's packets; the Captures page has the file */
	captureButton: function(mac, label) {
		if (!this.can('capture_start'))
			return [];
		return [ E('button', { 'class': 'btn cbi-button cbi-button-action', 'data-action': 'capture',
			'click': ui.createHandlerFn(this, 'handleCapture', mac, label) }, [ _('Capture') ]) ];
	},

	handleCapture: function(mac, label, ev) {
		return callCaptureStart(mac).then(function(c) {
			ui.addNotification(null, E('p', { 'class': 'spin-capture-started', 'data-id': c.id }, [
				_('Capturing every packet of %s for %d seconds: the file is on the Captures page.').format(label, c.seconds) ]), 'info');
		}).catch(function(err) {
			ui.addNotification(null, E('p', {}, [ common.failure(_('Capturing %s').format(label), err) ]), 'danger');
		});
	},

	handleTimeline: function(mac, ev) {
		if (this.open == mac) {
			this.open = null;
			this.chart = null;
			this.renderTable(this.data);
			return Promise.resolve();
		}
		this.open = mac;
		this.chart = null;
		this.renderTable(this.data);
		return callHistory(mac, 60).then(L.bind(function(h) {
			var cell = document.getElementById('spin-timeline');
			var width = cell ? cell.clientWidth - 16 : 600;
			this.chart = E('div', {}, [
				E('strong', {}, [ _('The last hour, per minute: upload above the line, download below') ]),
				chart.timeline(h, width, 3600)
			]);
			if (this.open == mac)
				this.renderTable(this.data);
		}, this));
	}
});
