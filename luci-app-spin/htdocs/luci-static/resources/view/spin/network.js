'use strict';
'require rpc';
'require poll';
'require ui';
'require dom';
'require spin.common as common';
'require spin.graph as graph';
'require spin.chart as chart';
'require spin.actions as actions';

/*
 * Network: every device and the domains it talks to, live. Edges are as
 * thick as the traffic of the last minute or two; a click on a node shows
 * what it is and what can be done about it. Actions whose method this
 * agent does not have (rpc.list) are not offered.
 */

var callStatus = rpc.declare({ object: 'spin', method: 'status', expect: { '': {} } });
/* no expect, no reject: a failed call answers [status, {error}] and the
 * picture shows the agent's own words instead of an empty canvas */
var callGraph = rpc.declare({ object: 'spin', method: 'graph', params: [ 'limit' ] });
/* devices come in pages (at most 150 a reply): common.allPages joins them */
var callDevices = rpc.declare({ object: 'spin', method: 'devices', params: [ 'limit', 'offset' ] });
var DEVICES_PAGE = 150;
var callBlocks = rpc.declare({ object: 'spin', method: 'blocks', expect: { '': { blocks: [], quarantines: [] } } });
var callHistory = rpc.declare({ object: 'spin', method: 'history', params: [ 'mac', 'minutes' ], expect: { '': { points: [] } } });
/* reads that must say when they fail (the poll shows it) */
var callStatusStrict = rpc.declare({ object: 'spin', method: 'status', expect: { '': {} }, reject: true });

var callIgnore = rpc.declare({ object: 'spin', method: 'ignore', params: [ 'remote' ], reject: true });

/* destinations drawn per device; the agent adds what is blocked or
 * allowed there and sums the rest per device in "others" */
var GRAPH_LIMIT = 20;

/* the graph call's answer, or a rejection saying what went wrong */
function graphCall() {
	return callGraph(GRAPH_LIMIT).then(function(res) {
		if (L.isObject(res) && Array.isArray(res.nodes) && Array.isArray(res.edges))
			return res;
		var detail = L.isObject(res) && res.error ? String(res.error) : '';
		var code = typeof(res) == 'number' ? res : 9;
		var err = new Error('RPC call to spin/graph failed with ubus code ' + code + (detail ? ': ' + detail : ''));
		err.detail = detail;
		throw err;
	});
}

/* the reason and end of a block or quarantine, under the state badge */
function stateLine(text) {
	return text ? E('div', { 'class': 'spin-muted spin-state-detail' }, [ text ]) : '';
}

return actions.View.extend({
	blockNote: _('blocked from the network view'),

	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			graphCall().catch(function(err) { return { nodes: [], edges: [], failed: err }; }),
			L.resolveDefault(common.allPages(callDevices, 'devices', DEVICES_PAGE), []),
			L.resolveDefault(callBlocks(), { blocks: [], quarantines: [] }),
			L.resolveDefault(rpc.list('spin'), {})
		]);
	},

	render: function(data) {
		this.methods = common.methods(data[4]);
		this.filter = '';
		this.selectedId = null;
		this.graph = new graph.Graph({ onselect: L.bind(this.renderDetails, this) });

		var filterBox = E('input', {
			'type': 'search', 'class': 'cbi-input-text', 'placeholder': _('Filter: device, address or domain'),
			'aria-label': _('Filter'),
			'input': L.bind(function(ev) {
				this.filter = ev.target.value;
				this.renderGraph(this.data);
			}, this)
		});

		/* the first drawing waits for the stylesheet: it sizes the canvas */
		var css = E('link', { 'rel': 'stylesheet', 'href': L.resource('spin/spin.css') });
		var styled = new Promise(function(resolve) {
			css.addEventListener('load', resolve);
			css.addEventListener('error', resolve);
		});

		var node = E('div', { 'class': 'spin-view', 'id': 'spin-network' }, [
			css,
			E('h2', {}, [ _('Network') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('Who each device on your network talks to, updated every scan. Thicker lines carry more traffic. Select a device or destination to see details and act on it.')
			]),
			E('div', { 'class': 'spin-toolbar' }, [
				filterBox,
				E('span', { 'class': 'spin-summary', 'id': 'spin-summary' }, [ _('Collecting data…') ]),
				E('span', { 'class': 'spin-summary', 'id': 'spin-link', 'role': 'status' }, [])
			]),
			E('div', { 'class': 'spin-graph-error alert-message warning', 'id': 'spin-graph-error',
				'role': 'alert', 'style': 'display:none' }, []),
			E('div', { 'class': 'spin-layout' }, [
				E('div', { 'class': 'spin-canvas', 'id': 'spin-canvas' }, [ this.graph.element() ]),
				E('div', { 'class': 'spin-details', 'id': 'spin-details' }, [
					E('p', { 'class': 'spin-muted' }, [ _('Select a device or a destination in the picture.') ])
				])
			]),
			E('div', { 'class': 'spin-legend' }, [
				E('span', { 'class': 'spin-l-device' }, [ _('Device') ]),
				E('span', { 'class': 'spin-l-endpoint' }, [ _('Destination (by domain)') ]),
				E('span', { 'class': 'spin-l-new' }, [ _('New device') ]),
				E('span', { 'class': 'spin-l-blocked' }, [ _('Blocked') ]),
				E('span', { 'class': 'spin-l-quarantined' }, [ _('Quarantined') ])
			])
		]);

		this.data = { status: data[0], graph: data[1], devices: data[2], blocks: data[3] };
		var failed = data[1].failed;
		/* draw once the skeleton is in the page and has its width */
		styled.then(L.bind(function() {
			this.setGraphError(failed);
			window.requestAnimationFrame(L.bind(function() { this.renderGraph(this.data); }, this));
		}, this));
		var redraw = null;
		window.addEventListener('resize', L.bind(function() {
			clearTimeout(redraw);
			redraw = setTimeout(L.bind(function() { this.renderGraph(this.data); }, this), 200);
		}, this));
		poll.add(L.bind(this.refresh, this), Math.max(1, +data[0].scan_interval || L.env.pollinterval || 5));
		return node;
	},

	refresh: function(acted) {
		return Promise.all([
			callStatusStrict(),
			graphCall().catch(function(err) { return { failed: err }; }),
			L.resolveDefault(common.allPages(callDevices, 'devices', DEVICES_PAGE), null),
			L.resolveDefault(callBlocks(), null)
		]).then(L.bind(function(res) {
			this.setLink(null);
			this.setGraphError(res[1].failed);
			if (res[1].failed)
				res[1] = null;
			this.data = {
				status: res[0],
				graph: res[1] || this.data.graph,
				devices: res[2] || this.data.devices,
				blocks: res[3] || this.data.blocks
			};
			this.renderGraph(this.data, acted === true);
		}, this)).catch(L.bind(function(err) {
			this.setLink(common.failure(_('Updating the picture'), err));
		}, this));
	},

	/* a failed graph call is said above the picture, in the agent's words
	 * when it gave some; the last good picture stays drawn under it */
	setGraphError: function(err) {
		var el = document.getElementById('spin-graph-error');
		if (!el)
			return;
		if (!err) {
			el.style.display = 'none';
			dom.content(el, []);
			return;
		}
		var text = common.failure(_('Drawing the picture'), err);
		if (err.detail)
			text += ' ' + _('The router said: %s').format(err.detail);
		dom.content(el, [ E('p', {}, [ text ]) ]);
		el.style.display = '';
	},

	setLink: function(msg) {
		var el = document.getElementById('spin-link');
		if (el)
			dom.content(el, msg ? [ E('em', {}, [ msg ]) ] : []);
	},

	/* acted: an action of the owner's, made from the details panel, asks
	 * for this drawing; its button still spins, but the panel must now
	 * show what the action changed rather than wait for the next poll */
	renderGraph: function(data, acted) {
		var narrow = (document.getElementById('spin-canvas') || {}).clientWidth < 500;
		var model = common.model(data.graph, data.devices, data.blocks,
			{ filter: this.filter, maxGroups: narrow ? 14 : 40 });
		this.model = model;
		var still = null, sel = this.selectedId;
		model.nodes.forEach(function(n) { if (n.id == sel) still = n; });
		model.edges.forEach(function(e) { if ('e:' + e.from + '|' + e.to == sel) still = e; });
		this.graph.selected = still ? sel : null;
		this.graph.update(model);

		var devs = model.nodes.filter(function(n) { return n.kind == 'device'; }).length;
		var summary = _('%d devices, %d destination domains').format(devs, model.groups);
		if (model.folded)
			summary += ' ' + _('(%d small ones folded into "others")').format(model.folded);
		/* what the agent left out: per device beyond its heaviest (graph limit) */
		var left = 0, others = (data.graph && data.graph.others) || {};
		for (var mac in others)
			left += +(others[mac] && others[mac].count) || 0;
		if (left)
			summary += ' ' + _('(%d lighter destinations not shown)').format(left);
		dom.content(document.getElementById('spin-summary'), [ summary ]);

		if (this.selectedId)
			this.renderDetails(still, !acted);
	},

	/* who talks to / with node, heaviest first */
	partners: function(node) {
		var byId = {}, out = [];
		this.model.nodes.forEach(function(n) { byId[n.id] = n; });
		this.model.edges.forEach(function(e) {
			if (e.from == node.id && byId[e.to])
				out.push([ byId[e.to], e.bytes ]);
			else if (e.to == node.id && byId[e.from])
				out.push([ byId[e.from], e.bytes ]);
		});
		return out.sort(function(a, b) { return b[1] - a[1]; });
	},

	renderDetails: function(node, quiet) {
		var box = document.getElementById('spin-details');
		if (!box)
			return;
		if (!node) {
			this.selectedId = null;
			dom.content(box, E('p', { 'class': 'spin-muted' }, [ _('Select a device or a destination in the picture.') ]));
			return;
		}
		/* a poll must not yank the panel from under a pressed button */
		if (quiet && box.querySelector('.spinning'))
			return;
		if (node.from)
			return this.renderEdge(box, node);
		this.selectedId = node.id;
		var rows = [], buttons = [];
		var partners = this.partners(node).slice(0, 8).map(function(p) {
			return E('li', {}, [ p[0].label + ' \u2014 ' + common.bytes(p[1]) ]);
		});

		if (node.kind == 'device') {
			var d = node.device, idx = this.model.index;
			rows.push([ _('State'), E('span', {}, [ E('span', { 'class': 'spin-badge spin-state-' + node.state }, [ common.stateText(node.state) ]),
				stateLine(common.stateDetail(d, idx)) ]) ]);
			rows.push([ _('MAC'), E('span', { 'class': 'spin-mono' }, [ d.mac ]) ]);
			if (d.hostname && d.hostname != d.name)
				rows.push([ _('Hostname'), d.hostname ]);
			rows.push([ _('Addresses'), E('span', { 'class': 'spin-mono' }, [ (d.ips || []).join(', ') || '-' ]) ]);
			if (d.rate_out != null)
				rows.push([ _('Now'), '\u2191 %s  \u2193 %s'.format(common.rate(d.rate_out), common.rate(d.rate_in)) ]);
			if (d.connections != null)
				rows.push([ _('Connections'), String(d.connections) ]);
			if (d.last_seen)
				rows.push([ _('Last seen'), common.ago(d.last_seen) ]);

			buttons = this.deviceButtons(d, idx, node.label).concat(this.renameButton(d.mac, node.label));
		}
		else {
			rows.push([ _('Traffic'), common.bytes(node.bytes) ]);
			if (node.kind == 'group' && node.names.length)
				rows.push([ _('Names'), node.names.slice(0, 6).join(', ') ]);
			rows.push([ _('Addresses'), E('span', { 'class': 'spin-mono' }, [
				node.members.slice(0, 8).join(', ') + (node.members.length > 8 ? ' \u2026' : '') ]) ]);
			if (node.kind == 'group') {
				var covering = this.model.index.remote.filter(function(b) {
					return node.members.some(function(ip) { return common.covers(b.remote, ip); });
				});
				if (covering.length) {
					rows.push([ _('State'), E('span', { 'class': 'spin-badge spin-state-blocked' }, [ _('Blocked') ]) ]);
					if (this.can('unblock'))
						buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-apply', 'data-action': 'unblock',
							'click': ui.createHandlerFn(this, 'handleUnblock', covering.map(function(b) { return b.id; }), node.label) },
							[ _('Unblock') ]));
				}
				else if (this.can('block'))
					buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-negative', 'data-action': 'block',
						'click': ui.createHandlerFn(this, 'handleBlockRemote', node.members.slice(), node.label) },
						[ _('Block for every device') ]));
				if (this.can('ignore'))
					buttons.push(E('button', { 'class': 'btn cbi-button', 'data-action': 'ignore',
						'click': ui.createHandlerFn(this, 'handleIgnore', node.members.slice(), node.label) },
						[ _('Ignore') ]));
			}
		}

		var timeline = '';
		if (node.kind == 'device') {
			var h = this.history(node.id);
			timeline = h ? E('div', { 'class': 'spin-mini' }, [
				E('strong', {}, [ _('The last hour') ]),
				chart.timeline(h, Math.max(240, box.clientWidth - 28), 3600)
			]) : '';
		}

		dom.content(box, [
			E('h3', {}, [ node.label ]),
			E('dl', {}, rows.reduce(function(acc, r) {
				return acc.concat([ E('dt', {}, [ r[0] ]), E('dd', {}, [ r[1] ]) ]);
			}, [])),
			partners.length ? E('div', {}, [
				E('strong', {}, [ node.kind == 'device' ? _('Talks to') : _('Devices') ]),
				E('ul', {}, partners)
			]) : E('p', { 'class': 'spin-muted' }, [ _('No traffic in the last minutes.') ]),
			timeline,
			E('div', { 'class': 'spin-actions' }, buttons)
		]);
	},

	/* an edge: one device and one destination domain, blocked as a pair */
	renderEdge: function(box, e) {
		var byId = {};
		this.model.nodes.forEach(function(n) { byId[n.id] = n; });
		var dev = byId[e.from], dst = byId[e.to];
		if (!dev || !dst)
			return;
		this.selectedId = 'e:' + e.from + '|' + e.to;
		var what = '%s \u2192 %s'.format(dev.label, dst.label), buttons = [];
		if (e.blocked && this.can('unblock'))
			buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-apply', 'data-action': 'unblock',
				'click': ui.createHandlerFn(this, 'handleUnblock', e.blocked.map(function(b) { return b.id; }), what) },
				[ _('Unblock') ]));
		else if (!e.blocked && dev.state != 'blocked' && dev.state != 'quarantined' && this.can('block'))
			buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-negative', 'data-action': 'block',
				'click': ui.createHandlerFn(this, 'handleBlockPair', e.from, dst.members.slice(), what) },
				[ _('Block for this device only') ]));
		dom.content(box, [
			E('h3', {}, [ what ]),
			E('dl', {}, [
				E('dt', {}, [ _('Traffic') ]), E('dd', {}, [ common.bytes(e.bytes) ]),
				E('dt', {}, [ _('Addresses') ]), E('dd', { 'class': 'spin-mono' }, [
					dst.members.slice(0, 8).join(', ') + (dst.members.length > 8 ? ' \u2026' : '') ]),
				E('dt', {}, [ _('State') ]), E('dd', {}, [ e.blocked
					? E('span', { 'class': 'spin-badge spin-state-blocked' }, [ _('Blocked') ])
					: E('span', { 'class': 'spin-badge' }, [ _('Allowed') ]) ])
			]),
			E('div', { 'class': 'spin-actions' }, buttons)
		]);
	},

	/* a device's last hour for the details panel: fetched when it is
	 * selected and again once a minute, drawn from the cache meanwhile */
	history: function(mac) {
		var h = this.hist;
		if ((!h || h.mac != mac || Date.now() - h.at > 60000) && this.histWanted != mac) {
			this.histWanted = mac;
			L.resolveDefault(callHistory(mac, 60), null).then(L.bind(function(data) {
				this.histWanted = null;
				if (!data)
					return;
				this.hist = { mac: mac, at: Date.now(), data: data };
				var still = (this.model.nodes || []).filter(function(n) { return n.id == mac; })[0];
				if (this.selectedId == mac && still)
					this.renderDetails(still, true);
			}, this));
		}
		return h && h.mac == mac ? h.data : null;
	},

	handleBlockRemote: function(ips, label, ev) {
		return this.block(label, undefined, ips, label);
	},

	handleBlockPair: function(mac, ips, label, ev) {
		return this.block(label, mac, ips, label);
	},

	handleIgnore: function(ips, label, ev) {
		if (!window.confirm(_('Ignore %s? Traffic to and from its addresses is no longer counted or shown; the Blocks page lists what is ignored.').format(label)))
			return Promise.resolve();
		this.selectedId = null;
		return this.act(_('Ignoring %s').format(label), Promise.all(ips.map(function(ip) {
			return callIgnore(ip);
		})));
	}
});
