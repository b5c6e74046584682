'use strict';
'require rpc';
'require poll';
'require ui';
'require dom';
'require spin.common as common';
'require spin.actions as actions';

/*
 * Captures: the owner records every packet of one device for a while, as
 * a pcap file for Wireshark. The agent bounds each one (time, size, free
 * space, how many at once) and says why it stopped. The file comes
 * through the API itself (capture_data, a page of base64 at a time), so
 * the download works the same under LuCI (rpcd) and on the agent's own
 * page.
 */

var callStatus = rpc.declare({ object: 'spin', method: 'status', expect: { '': {} } });
var callDevices = rpc.declare({ object: 'spin', method: 'devices', params: [ 'limit', 'offset' ] });
var callCaptures = rpc.declare({ object: 'spin', method: 'captures', expect: { '': { captures: [] } } });
var callCapturesStrict = rpc.declare({ object: 'spin', method: 'captures', expect: { '': { captures: [] } }, reject: true });
var callStart = rpc.declare({ object: 'spin', method: 'capture_start', params: [ 'mac', 'seconds' ], reject: true });
var callStop = rpc.declare({ object: 'spin', method: 'capture_stop', params: [ 'id' ], reject: true });
var callDelete = rpc.declare({ object: 'spin', method: 'capture_delete', params: [ 'id' ], reject: true });
var callData = rpc.declare({ object: 'spin', method: 'capture_data', params: [ 'id', 'offset' ], expect: { '': {} }, reject: true });

var WHY = {
	time: _('its time was up'),
	size: _('it reached its size limit'),
	space: _('the router ran low on space'),
	owner: _('stopped by you'),
	device: _('the device left the network'),
	agent: _('spin-lite stopped')
};

function why(c) {
	if (c.state == 'running')
		return c.listening ? _('recording') : _('starting');
	return WHY[c.why] || c.why || '';
}

/* the whole file, page after page, as bytes */
function fetchAll(id) {
	var parts = [];
	var next = function(offset) {
		return callData(id, offset).then(function(r) {
			var bin = atob(r.data || ''), buf = new Uint8Array(bin.length);
			for (var i = 0; i < bin.length; i++)
				buf[i] = bin.charCodeAt(i);
			parts.push(buf);
			return r.more && r.length ? next(offset + r.length) : parts;
		});
	};
	return next(0);
}

return actions.View.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(common.allPages(callDevices, 'devices', 150), []),
			L.resolveDefault(callCaptures(), { captures: [] }),
			L.resolveDefault(rpc.list('spin'), {})
		]);
	},

	render: function(data) {
		this.methods = common.methods(data[3]);
		var devices = data[1] || [];
		var limits = data[2] || {};
		var form = '';
		if (this.can('capture_start'))
			form = E('form', { 'class': 'spin-toolbar', 'id': 'spin-capture-form', 'submit': L.bind(function(ev) {
				ev.preventDefault();
				return this.handleStart(ev);
			}, this) }, [
				E('select', { 'id': 'spin-capture-mac', 'aria-label': _('Device to capture') }, devices.map(function(d) {
					return E('option', { 'value': d.mac }, [ common.deviceLabel(d) ]);
				})),
				E('input', { 'type': 'number', 'class': 'cbi-input-text', 'id': 'spin-capture-seconds', 'min': '1',
					'max': String(limits.seconds_max || 600), 'value': String(Math.min(60, limits.seconds_max || 60)),
					'aria-label': _('Seconds'), 'style': 'width:6em' }),
				E('span', {}, [ _('seconds') ]),
				E('button', { 'class': 'btn cbi-button cbi-button-action', 'type': 'submit' }, [ _('Start capture') ])
			]);
		var node = E('div', { 'class': 'spin-view', 'id': 'spin-captures' }, [
			E('link', { 'rel': 'stylesheet', 'href': L.resource('spin/spin.css') }),
			E('h2', {}, [ _('Captures') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('Every packet of one device, for a while, as a file Wireshark opens. At most %d at once, each up to %d seconds and %d KB; the files live in the router\'s memory and go when spin-lite stops.')
					.format(limits.max || 0, limits.seconds_max || 0, limits.kb_max || 0)
			]),
			E('span', { 'class': 'spin-summary', 'id': 'spin-link', 'role': 'status' }, []),
			form,
			E('table', { 'class': 'spin-table', 'id': 'spin-capture-table' }, [
				E('thead', {}, [ E('tr', {}, [ _('Device'), _('Started'), _('State'), _('Size'), _('Packets'), '' ].map(function(h) {
					return E('th', {}, [ h ]);
				})) ]),
				E('tbody', {}, [])
			])
		]);
		window.requestAnimationFrame(L.bind(function() { this.renderList(limits); }, this));
		poll.add(L.bind(this.refresh, this), 2);
		return node;
	},

	refresh: function() {
		return callCapturesStrict().then(L.bind(function(listing) {
			dom.content(document.getElementById('spin-link'), []);
			this.renderList(listing);
		}, this)).catch(L.bind(function(err) {
			dom.content(document.getElementById('spin-link'), [ E('em', {}, [ common.failure(_('Updating the captures'), err) ]) ]);
		}, this));
	},

	renderList: function(listing) {
		var tbody = document.querySelector('#spin-capture-table tbody');
		if (!tbody)
			return;
		var now = Date.now() / 1000;
		var rows = (listing.captures || []).slice().reverse().map(L.bind(function(c) {
			var buttons = [];
			if (c.state == 'running' && this.can('capture_stop'))
				buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-negative', 'data-action': 'stop',
					'click': ui.createHandlerFn(this, 'handleStop', c.id) }, [ _('Stop') ]));
			if (c.state != 'running' && this.can('capture_data'))
				buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-action', 'data-action': 'download',
					'click': ui.createHandlerFn(this, 'handleDownload', c) }, [ _('Download') ]));
			if (this.can('capture_delete'))
				buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-remove', 'data-action': 'delete',
					'click': ui.createHandlerFn(this, 'handleDelete', c.id) }, [ _('Delete') ]));
			return E('tr', { 'data-id': c.id, 'data-state': c.state, 'data-why': c.why || '' }, [
				E('td', { 'data-title': _('Device') }, [ E('strong', {}, [ c.device || c.mac ]), E('div', { 'class': 'spin-muted' }, [ c.mac ]) ]),
				E('td', { 'data-title': _('Started') }, [ common.ago(c.start, now) ]),
				E('td', { 'data-title': _('State') }, [ c.state, E('div', { 'class': 'spin-muted' }, [ why(c) ]) ]),
				E('td', { 'data-title': _('Size'), 'class': 'spin-num' }, [ common.bytes(c.bytes || 0) ]),
				E('td', { 'data-title': _('Packets'), 'class': 'spin-num' }, [ String(c.packets || 0),
					c.drops ? E('div', { 'class': 'spin-muted' }, [ _('%d lost').format(c.drops) ]) : '' ]),
				E('td', { 'data-title': '' }, buttons)
			]);
		}, this));
		if (!rows.length)
			rows = [ E('tr', {}, [ E('td', { 'colspan': 6, 'class': 'spin-empty' }, [ _('No captures.') ]) ]) ];
		dom.content(tbody, rows);
	},

	handleStart: function(ev) {
		var mac = document.getElementById('spin-capture-mac').value;
		var seconds = parseInt(document.getElementById('spin-capture-seconds').value, 10);
		return this.act(_('Starting a capture'), callStart(mac, isNaN(seconds) ? undefined : seconds));
	},

	handleStop: function(id, ev) {
		return this.act(_('Stopping the capture'), callStop(id));
	},

	handleDelete: function(id, ev) {
		return this.act(_('Deleting the capture'), callDelete(id));
	},

	/* the file as a Blob the browser saves; the link stays (hidden) in the
	 * page so that it can be fetched again */
	handleDownload: function(c, ev) {
		return fetchAll(c.id).then(function(parts) {
			var old = document.getElementById('spin-capture-file');
			if (old)
				old.parentNode.removeChild(old);
			var a = E('a', { 'id': 'spin-capture-file', 'style': 'display:none', 'data-id': c.id,
				'download': 'spin-%s-%d.pcap'.format(c.mac.replace(/:/g, ''), c.id),
				'href': URL.createObjectURL(new Blob(parts, { type: 'application/vnd.tcpdump.pcap' })) }, []);
			document.body.appendChild(a);
			a.click();
		}).catch(function(err) {
			ui.addNotification(null, E('p', {}, [ common.failure(_('Downloading the capture'), err) ]), 'danger');
		});
	}
});
