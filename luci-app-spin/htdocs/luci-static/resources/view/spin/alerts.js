'use strict';
'require rpc';
'require poll';
'require ui';
'require dom';
'require spin.common as common';
'require spin.actions as actions';

/*
 * Alerts: what the detector saw, newest first, in the words of the
 * agent's record (text), with the figures that crossed the rule's
 * thresholds and what was done about it. Per row the owner's way back:
 * release or keep a quarantine, or say "this is normal" (mute the rule
 * for that device). The rules marked normal are listed below, each with
 * the way to be alerted again.
 */

var callStatus = rpc.declare({ object: 'spin', method: 'status', expect: { '': {} } });
/* records come in pages, newest first; a failure must be said, not drawn
 * as an empty table, so this read rejects */
var callAnomalies = rpc.declare({ object: 'spin', method: 'anomalies', params: [ 'limit', 'offset' ], reject: true });
var callMutes = rpc.declare({ object: 'spin', method: 'mutes', reject: true });
var callKeep = rpc.declare({ object: 'spin', method: 'keep', params: [ 'id' ], reject: true });
var callMute = rpc.declare({ object: 'spin', method: 'mute', params: [ 'mac', 'rule', 'minutes' ], reject: true });
var callUnmute = rpc.declare({ object: 'spin', method: 'unmute', params: [ 'mac', 'rule' ], reject: true });

/* records asked per reply, and shown at first (the owner asks for more) */
var PAGE = 50;

/* the detector's rules (detect.RULES) as an owner names them; a rule
 * missing here is shown by its key, the record's text says the rest */
var RULE_TITLES = {
	outbound_scan: _('Scanning the internet'),
	slow_scan: _('Slowly scanning the internet'),
	one_remote_flood: _('Flooding one address'),
	udp_flood: _('UDP flood'),
	lan_scan: _('Scanning your network'),
	dns_bypass: _('DNS past the router'),
	table_hog: _('Filling the connection table'),
	baseline_new_flows: _('Far more connections than usual'),
	baseline_remotes: _('Far more destinations than usual'),
	baseline_new_endpoint_upload: _('Upload to a new destination'),
	baseline_unanswered: _('Far more unanswered attempts than usual')
};

var LAYER_TEXT = {
	A: _('certain sign'),
	B: _('unusual for this device')
};

/* what the record's state says to an owner, and its badge colour */
var STATES = {
	open: [ _('Alert'), 'alert' ],
	quarantined: [ _('Quarantined'), 'quarantined' ],
	kept: [ _('Kept in quarantine'), 'quarantined' ],
	released: [ _('Released'), 'normal' ],
	expired: [ _('Quarantine ended'), 'normal' ]
};

var ACTION_TEXT = {
	monitor: _('monitor only: not quarantined'),
	muted: _('you marked this normal: no action'),
	alerted: _('alert only')
};

function ruleTitle(rule) {
	if (RULE_TITLES[rule])
		return RULE_TITLES[rule];
	var words = String(rule || '').replace(/_/g, ' ');
	return words.charAt(0).toUpperCase() + words.slice(1);
}

/* a figure as people read it: shares as percentages, counts whole */
function figureText(name, v) {
	if (typeof(v) != 'number')
		return String(v);
	if (/share|ratio|fraction|concentration/.test(name) && v >= 0 && v <= 1)
		return Math.round(v * 100) + '\u202f%';
	if (/pct|percent/.test(name))
		return Math.round(v) + '\u202f%';
	if (/bytes/.test(name))
		return common.bytes(v);
	return v == Math.round(v) ? String(v) : v.toFixed(2);
}

/* the records' figures beside their thresholds: "name: figure (limit)";
 * a figure without a threshold is context, listed after them */
function figureList(rec) {
	var figures = rec.figures || {}, limits = rec.thresholds || {};
	var names = Object.keys(limits).concat(Object.keys(figures).filter(function(k) { return !(k in limits); }));
	return E('ul', { 'class': 'spin-figures' }, names.map(function(k) {
		var label = k.replace(/_/g, ' ');
		if (!(k in figures))
			return E('li', {}, [ _('%s: limit %s').format(label, figureText(k, limits[k])) ]);
		if (!(k in limits))
			return E('li', { 'class': 'spin-muted' }, [ '%s: %s'.format(label, figureText(k, figures[k])) ]);
		return E('li', { 'data-figure': k }, [
			'%s: '.format(label), E('strong', {}, [ figureText(k, figures[k]) ]),
			' ', E('span', { 'class': 'spin-muted' }, [ _('(limit %s)').format(figureText(k, limits[k])) ])
		]);
	}));
}

function examplesText(rec) {
	var ex = rec.examples || {}, parts = [];
	if ((ex.remotes || []).length)
		parts.push(_('to %s').format(ex.remotes.join(', ')));
	if ((ex.ports || []).length)
		parts.push(_('ports %s').format(ex.ports.join(', ')));
	return parts.join('; ');
}

function windowText(seconds) {
	seconds = +seconds || 0;
	if (!seconds)
		return '';
	if (seconds < 300 && seconds % 60)
		return _('within %d s').format(seconds);
	return _('within %d min').format(Math.round(seconds / 60));
}

/* a table cell whose content stays one block: a phone draws each cell
 * as a flex line (label, content), which would set lines side by side */
function cell(title, children, attrs) {
	return E('td', Object.assign({ 'data-title': title }, attrs || {}), [ E('div', {}, children) ]);
}

function deviceLabel(label, mac) {
	return [ E('strong', {}, [ label ]), label != mac ? E('div', { 'class': 'spin-mono spin-muted' }, [ mac ]) : '' ];
}

/* a failed read of the records in words: an agent without the method
 * (3) or without the response part running (4) has no alerts to give */
function readFailure(err) {
	if (/ubus code [34]\b/.test(String((err && err.message) || err || '')))
		return _('No alerts to show: this spin-lite agent does not run anomaly detection.');
	return common.failure(_('Reading the alerts'), err);
}

/* the mutes reply as a list, whichever way the agent wraps it */
function muteList(res) {
	if (Array.isArray(res))
		return res;
	return (res && Array.isArray(res.mutes)) ? res.mutes : [];
}

return actions.View.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			this.records(PAGE).catch(function(err) { return { failed: err }; }),
			L.resolveDefault(callMutes(), []),
			L.resolveDefault(rpc.list('spin'), {})
		]);
	},

	/* the newest `want` records, page after page, with the total */
	records: function(want) {
		var out = [];
		function next(offset) {
			return callAnomalies(Math.min(PAGE, want - out.length), offset).then(function(res) {
				if (!L.isObject(res) || !Array.isArray(res.anomalies))
					throw new Error('RPC call to spin/anomalies failed with ubus code 9');
				out = out.concat(res.anomalies);
				if (res.remaining > 0 && res.anomalies.length > 0 && out.length < want)
					return next(offset + res.anomalies.length);
				return { anomalies: out, total: res.total != null ? res.total : out.length,
					remaining: res.remaining || 0 };
			});
		}
		return next(0);
	},

	table: function(id, heads) {
		return E('table', { 'class': 'spin-table', 'id': id }, [
			E('thead', {}, [ E('tr', {}, heads.map(function(h) { return E('th', {}, [ h ]); })) ]),
			E('tbody', {}, [])
		]);
	},

	render: function(data) {
		this.methods = common.methods(data[3]);
		this.want = PAGE;
		this.data = { anomalies: [], total: 0, remaining: 0 };
		this.mutes = muteList(data[2]);

		var node = E('div', { 'class': 'spin-view', 'id': 'spin-alerts' }, [
			E('link', { 'rel': 'stylesheet', 'href': L.resource('spin/spin.css') }),
			E('h2', {}, [ _('Alerts') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('What a device did that looked like malware, newest first, and what the router did about it. A quarantine ends by itself unless you keep it; "This is normal" stops this alert for that device.')
			]),
			E('div', { 'class': 'spin-toolbar' }, [
				E('span', { 'class': 'spin-summary', 'id': 'spin-alert-summary' }, []),
				E('span', { 'class': 'spin-summary', 'id': 'spin-link', 'role': 'status' }, [])
			]),
			this.table('spin-alert-table', [ _('When'), _('Device'), _('What happened'), _('Rule'),
				_('Figures'), _('State'), '' ]),
			E('div', { 'class': 'spin-toolbar', 'id': 'spin-alert-more' }, []),
			E('h3', {}, [ _('Marked normal') ]),
			this.table('spin-mute-table', [ _('Device'), _('Rule'), _('Until'), '' ])
		]);
		window.requestAnimationFrame(L.bind(function() { this.renderAlerts(data[1]); this.renderMutes(); }, this));
		poll.add(L.bind(this.refresh, this), Math.max(2, +data[0].scan_interval || L.env.pollinterval || 5));
		return node;
	},

	refresh: function() {
		return Promise.all([
			this.records(this.want).catch(function(err) { return { failed: err }; }),
			this.can('mutes') ? callMutes().catch(function() { return null; }) : null
		]).then(L.bind(function(res) {
			if (res[1])
				this.mutes = muteList(res[1]);
			this.renderAlerts(res[0]);
			this.renderMutes();
		}, this));
	},

	/* rows for the records; a failed read keeps what was shown and says
	 * why above it, and a first read that failed says why in the table */
	renderAlerts: function(got) {
		var tbody = document.querySelector('#spin-alert-table tbody');
		if (!tbody)
			return;
		var link = document.getElementById('spin-link');
		if (got.failed) {
			var why = readFailure(got.failed);
			if (this.shown) {
				dom.content(link, [ E('em', {}, [ why ]) ]);
				return;
			}
			dom.content(tbody, [ E('tr', {}, [ E('td', { 'colspan': 7, 'class': 'spin-empty spin-error', 'role': 'alert' }, [ why ]) ]) ]);
			return;
		}
		dom.content(link, []);
		this.shown = true;
		this.data = got;
		var now = Date.now() / 1000;
		var rows = got.anomalies.map(L.bind(function(rec) { return this.alertRow(rec, now); }, this));
		if (!rows.length)
			rows = [ E('tr', {}, [ E('td', { 'colspan': 7, 'class': 'spin-empty' }, [ _('No alerts: no device has behaved like malware.') ]) ]) ];
		dom.content(tbody, rows);
		this.renderSummary(got);
	},

	renderSummary: function(got) {
		var quarantined = got.anomalies.filter(function(r) { return r.state == 'quarantined' || r.state == 'kept'; }).length;
		var open = got.anomalies.filter(function(r) { return r.state == 'open'; }).length;
		dom.content(document.getElementById('spin-alert-summary'), [
			_('%d alerts, %d open, in quarantine: %d').format(got.total, open, quarantined) ]);
		var more = [];
		if (got.remaining > 0)
			more.push(E('button', { 'class': 'btn cbi-button', 'data-action': 'older',
				'click': ui.createHandlerFn(this, 'handleOlder') }, [ _('Show %d older').format(Math.min(PAGE, got.remaining)) ]));
		dom.content(document.getElementById('spin-alert-more'), more);
	},

	alertRow: function(rec, now) {
		var label = rec.device || rec.mac;
		var st = STATES[rec.state] || [ rec.state, 'normal' ];
		var stateCell = [ E('span', { 'class': 'spin-badge spin-state-' + st[1] }, [ st[0] ]) ];
		if (rec.state == 'quarantined')
			stateCell.push(E('div', { 'class': 'spin-muted' }, [ _('ends %s').format(common.until(rec.until, now)) ]));
		if (ACTION_TEXT[rec.action] && rec.state == 'open')
			stateCell.push(E('div', { 'class': 'spin-muted' }, [ ACTION_TEXT[rec.action] ]));
		var held = rec.scans > 1 ? _('first %s, held %d scans').format(common.ago(rec.first, now), rec.scans) : '';
		var example = examplesText(rec), span = windowText(rec.window);

		return E('tr', { 'data-id': rec.id, 'data-mac': rec.mac, 'data-rule': rec.rule, 'data-state': rec.state }, [
			cell(_('When'), [ common.ago(rec.last || rec.first, now), held ? E('div', { 'class': 'spin-muted' }, [ held ]) : '' ],
				{ 'title': new Date((rec.last || rec.first) * 1000).toLocaleString() }),
			cell(_('Device'), deviceLabel(label, rec.mac)),
			cell(_('What happened'), [ rec.text || '', example ? E('div', { 'class': 'spin-muted' }, [ example ]) : '' ],
				{ 'class': 'spin-alert-text' }),
			cell(_('Rule'), [ ruleTitle(rec.rule),
				E('div', { 'class': 'spin-muted' }, [ [ LAYER_TEXT[rec.layer] || rec.layer, span ].filter(Boolean).join(', ') ]) ]),
			cell(_('Figures'), [ figureList(rec) ]),
			cell(_('State'), stateCell),
			E('td', { 'data-title': '' }, [ E('div', { 'class': 'spin-actions' }, this.alertButtons(rec, label)) ])
		]);
	},


	muted: function(mac, rule) {
		return this.mutes.some(function(m) { return m.mac == mac && m.rule == rule; });
	},

	/* release and keep while the quarantine holds; "this is normal"
	 * until the owner has said so for this device and rule */
	alertButtons: function(rec, label) {
		var out = [];
		if ((rec.state == 'quarantined' || rec.state == 'kept') && this.can('release'))
			out.push(E('button', { 'class': 'btn cbi-button cbi-button-apply', 'data-action': 'release',
				'click': ui.createHandlerFn(this, 'handleRelease', rec.mac, label) }, [ _('Release') ]));
		if (rec.state == 'quarantined' && this.can('keep'))
			out.push(E('button', { 'class': 'btn cbi-button cbi-button-negative', 'data-action': 'keep',
				'title': _('Keep it in quarantine until you release it'),
				'click': ui.createHandlerFn(this, 'handleKeep', rec.id, label) }, [ _('Keep') ]));
		if (!this.muted(rec.mac, rec.rule) && this.can('mute'))
			out.push(E('button', { 'class': 'btn cbi-button', 'data-action': 'mute',
				'click': ui.createHandlerFn(this, 'handleMute', rec.mac, rec.rule, label) }, [ _('This is normal') ]));
		return out;
	},

	renderMutes: function() {
		var tbody = document.querySelector('#spin-mute-table tbody');
		if (!tbody)
			return;
		var now = Date.now() / 1000;
		var names = {};
		(this.data.anomalies || []).forEach(function(r) { if (r.device) names[r.mac] = r.device; });
		var rows = this.mutes.map(L.bind(function(m) {
			var label = m.device || m.name || names[m.mac] || m.mac;
			return E('tr', { 'data-mac': m.mac, 'data-rule': m.rule }, [
				cell(_('Device'), deviceLabel(label, m.mac)),
				E('td', { 'data-title': _('Rule') }, [ ruleTitle(m.rule) ]),
				E('td', { 'data-title': _('Until') }, [ common.until(m.until || m.expires, now) ]),
				E('td', { 'data-title': '' }, this.can('unmute') ? [ E('button', { 'class': 'btn cbi-button',
					'data-action': 'unmute', 'click': ui.createHandlerFn(this, 'handleUnmute', m.mac, m.rule, label) },
					[ _('Alert again') ]) ] : [])
			]);
		}, this));
		if (!rows.length)
			rows = [ E('tr', {}, [ E('td', { 'colspan': 4, 'class': 'spin-empty' }, [ _('Nothing is marked normal.') ]) ]) ];
		dom.content(tbody, rows);
	},

	handleOlder: function(ev) {
		this.want += PAGE;
		return this.refresh();
	},

	handleKeep: function(id, label, ev) {
		return this.act(_('Keeping %s in quarantine').format(label), callKeep(id));
	},

	handleMute: function(mac, rule, label, ev) {
		if (!window.confirm(_('Is this normal for %s? spin-lite stops acting on "%s" for this device until you ask to be alerted again.').format(label, ruleTitle(rule))))
			return Promise.resolve();
		return this.act(_('Marking "%s" normal for %s').format(ruleTitle(rule), label), callMute(mac, rule));
	},

	handleUnmute: function(mac, rule, label, ev) {
		return this.act(_('Alerting again on "%s" for %s').format(ruleTitle(rule), label), callUnmute(mac, rule));
	}
});
