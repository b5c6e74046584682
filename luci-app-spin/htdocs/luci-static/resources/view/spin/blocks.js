'use strict';
'require rpc';
'require poll';
'require ui';
'require dom';
'require spin.common as common';
'require spin.actions as actions';

/*
 * Blocks: every block and quarantine in force, when it ends and how many
 * packets it stopped, with the way back (unblock, release). A small form
 * blocks a destination (an address or a prefix) for every device.
 */

var callStatus = rpc.declare({ object: 'spin', method: 'status', expect: { '': {} } });
var callBlocks = rpc.declare({ object: 'spin', method: 'blocks', expect: { '': { blocks: [], quarantines: [], allows: [] } } });
var callBlocksStrict = rpc.declare({ object: 'spin', method: 'blocks', expect: { '': { blocks: [], quarantines: [], allows: [] } }, reject: true });

/* a destination for every device, timed (unblock and release come with actions.View) */
var callBlock = rpc.declare({ object: 'spin', method: 'block', params: [ 'remote', 'minutes', 'note' ], reject: true });
var callDisallow = rpc.declare({ object: 'spin', method: 'disallow', params: [ 'mac', 'remote' ], reject: true });
var callIgnored = rpc.declare({ object: 'spin', method: 'ignored', expect: { ignored: [] } });
var callUnignore = rpc.declare({ object: 'spin', method: 'unignore', params: [ 'remote' ], reject: true });

return actions.View.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(callBlocks(), { blocks: [], quarantines: [], allows: [] }),
			L.resolveDefault(rpc.list('spin'), {}),
			L.resolveDefault(callIgnored(), [])
		]);
	},

	table: function(id, heads) {
		return E('table', { 'class': 'spin-table', 'id': id }, [
			E('thead', {}, [ E('tr', {}, heads.map(function(h) { return E('th', {}, [ h ]); })) ]),
			E('tbody', {}, [])
		]);
	},

	render: function(data) {
		this.methods = common.methods(data[2]);
		var form = [];
		if (this.can('block'))
			form = E('form', { 'class': 'spin-toolbar', 'id': 'spin-block-form', 'submit': L.bind(function(ev) {
				ev.preventDefault();
				return this.handleBlockRemote(ev);
			}, this) }, [
				E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': 'spin-block-remote',
					'placeholder': _('Address or prefix, e.g. 203.0.113.7 or 203.0.113.0/24'), 'aria-label': _('Destination to block'),
					'style': 'flex:1 1 16em;max-width:24em' }),
				E('select', { 'id': 'spin-block-minutes', 'aria-label': _('For how long') }, [
					E('option', { 'value': '' }, [ _('until unblocked') ]),
					E('option', { 'value': '60' }, [ _('for an hour') ]),
					E('option', { 'value': '1440' }, [ _('for a day') ])
				]),
				E('button', { 'class': 'btn cbi-button cbi-button-negative', 'type': 'submit' }, [ _('Block for every device') ])
			]);

		var node = E('div', { 'class': 'spin-view', 'id': 'spin-blocks' }, [
			E('link', { 'rel': 'stylesheet', 'href': L.resource('spin/spin.css') }),
			E('h2', {}, [ _('Blocks') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('What the router stops now. Blocks and quarantines survive a restart of the router; timed ones end by themselves.')
			]),
			E('span', { 'class': 'spin-summary', 'id': 'spin-link', 'role': 'status' }, []),
			E('h3', {}, [ _('Blocked') ]),
			form,
			this.table('spin-block-table', [ _('What'), _('Since'), _('Ends'), _('Packets stopped'), _('Note'), '' ]),
			E('h3', {}, [ _('Quarantined devices') ]),
			this.table('spin-quarantine-table', [ _('Device'), _('Since'), _('Ends'), _('Packets stopped'), _('Reason'), '' ]),
			E('h3', {}, [ _('Always allowed') ]),
			this.table('spin-allow-table', [ _('Device or destination'), '' ]),
			this.can('ignored') ? E('h3', {}, [ _('Ignored destinations') ]) : '',
			this.can('ignored') ? E('div', { 'class': 'cbi-map-descr' }, [
				_('Traffic to and from these addresses is not counted or shown.') ]) : '',
			this.can('ignored') ? this.table('spin-ignore-table', [ _('Address'), _('Why'), '' ]) : ''
		]);
		window.requestAnimationFrame(L.bind(function() { this.renderLists(data[1], data[3]); }, this));
		poll.add(L.bind(this.refresh, this), Math.max(2, +data[0].scan_interval || L.env.pollinterval || 5));
		return node;
	},

	refresh: function() {
		return Promise.all([
			callBlocksStrict(),
			this.can('ignored') ? L.resolveDefault(callIgnored(), []) : []
		]).then(L.bind(function(res) {
			dom.content(document.getElementById('spin-link'), []);
			this.renderLists(res[0], res[1]);
		}, this)).catch(L.bind(function(err) {
			dom.content(document.getElementById('spin-link'), [ E('em', {}, [ common.failure(_('Updating the lists'), err) ]) ]);
		}, this));
	},

	fill: function(id, rows, empty, cols) {
		var tbody = document.querySelector('#' + id + ' tbody');
		if (!tbody)
			return;
		if (!rows.length)
			rows = [ E('tr', {}, [ E('td', { 'colspan': cols, 'class': 'spin-empty' }, [ empty ]) ]) ];
		dom.content(tbody, rows);
	},

	renderLists: function(listing, ignored) {
		var now = Date.now() / 1000;
		this.fill('spin-block-table', (listing.blocks || []).map(L.bind(function(b) {
			return E('tr', { 'data-id': b.id }, [
				E('td', { 'data-title': _('What') }, [ E('strong', {}, [ b.what || b.remote || b.mac || ('#' + b.id) ]),
					b.active === false ? E('div', { 'class': 'spin-muted' }, [ _('not in force: the device is always allowed') ]) : '' ]),
				E('td', { 'data-title': _('Since') }, [ b.created ? common.ago(b.created, now) : '-' ]),
				E('td', { 'data-title': _('Ends') }, [ common.until(b.expires, now) ]),
				E('td', { 'data-title': _('Packets stopped'), 'class': 'spin-num' }, [ String(b.dropped || 0) ]),
				E('td', { 'data-title': _('Note') }, [ b.note || '' ]),
				E('td', { 'data-title': '' }, this.can('unblock') ? [ E('button', {
					'class': 'btn cbi-button cbi-button-apply', 'data-action': 'unblock',
					'click': ui.createHandlerFn(this, 'handleUnblock', b.id, b.what || String(b.id)) }, [ _('Unblock') ]) ] : [])
			]);
		}, this)), _('Nothing is blocked.'), 6);

		this.fill('spin-quarantine-table', (listing.quarantines || []).map(L.bind(function(q) {
			var label = q.name || q.mac;
			return E('tr', { 'data-mac': q.mac }, [
				E('td', { 'data-title': _('Device') }, [ E('strong', {}, [ label ]), ' ', E('span', { 'class': 'spin-mono spin-muted' }, [ q.mac ]) ]),
				E('td', { 'data-title': _('Since') }, [ q.created ? common.ago(q.created, now) : '-' ]),
				E('td', { 'data-title': _('Ends') }, [ common.until(q.expires, now) ]),
				E('td', { 'data-title': _('Packets stopped'), 'class': 'spin-num' }, [ String(q.dropped || 0) ]),
				E('td', { 'data-title': _('Reason') }, [ q.reason || '' ]),
				E('td', { 'data-title': '' }, this.can('release') ? [ E('button', {
					'class': 'btn cbi-button cbi-button-apply', 'data-action': 'release',
					'click': ui.createHandlerFn(this, 'handleRelease', q.mac, label) }, [ _('Release') ]) ] : [])
			]);
		}, this)), _('No device is in quarantine.'), 6);

		this.fill('spin-allow-table', (listing.allows || []).map(L.bind(function(a) {
			var what = a.mac || a.remote;
			return E('tr', {}, [
				E('td', { 'data-title': _('Device or destination'), 'class': 'spin-mono' }, [ what ]),
				E('td', { 'data-title': '' }, this.can('disallow') ? [ E('button', {
					'class': 'btn cbi-button', 'data-action': 'disallow',
					'click': ui.createHandlerFn(this, 'handleDisallow', a.mac || undefined, a.remote || undefined, what) }, [ _('Stop allowing') ]) ] : [])
			]);
		}, this)), _('Nothing is on the allow list.'), 2);

		/* what the owner chose to ignore, one row each; the router's own
		 * addresses (one per interface, link-local ones too) in one line */
		var mine = (ignored || []).filter(function(i) { return i.why != 'router'; });
		var router = (ignored || []).filter(function(i) { return i.why == 'router'; });
		var rows = mine.map(L.bind(function(i) {
			return E('tr', { 'data-remote': i.remote, 'data-why': i.why }, [
				E('td', { 'data-title': _('Address'), 'class': 'spin-mono' }, [ i.remote ]),
				E('td', { 'data-title': _('Why') }, [ _('you chose to') ]),
				E('td', { 'data-title': '' }, this.can('unignore') ? [ E('button', {
					'class': 'btn cbi-button', 'data-action': 'unignore',
					'click': ui.createHandlerFn(this, 'handleUnignore', i.remote) }, [ _('Show again') ]) ] : [])
			]);
		}, this));
		if (router.length)
			rows.push(E('tr', { 'data-why': 'router' }, [
				E('td', { 'colspan': 3, 'class': 'spin-muted', 'title': router.map(function(i) { return i.remote; }).join(' ') }, [
					(mine.length ? _('and the router\'s own %d addresses') : _('The router\'s own %d addresses'))
						.format(router.length) ])
			]));
		this.fill('spin-ignore-table', rows, _('Nothing is ignored.'), 3);
	},

	handleUnignore: function(remote, ev) {
		return this.act(_('Showing %s again').format(remote), callUnignore(remote));
	},

	handleBlockRemote: function(ev) {
		var input = document.getElementById('spin-block-remote');
		var remote = input.value.trim();
		if (!remote) {
			ui.addNotification(null, E('p', {}, [ _('Type the address or prefix to block first.') ]), 'warning');
			return Promise.resolve();
		}
		var minutes = +document.getElementById('spin-block-minutes').value || undefined;
		return this.act(_('Blocking %s').format(remote), callBlock(remote, minutes, _('blocked from the block list')).then(function() {
			input.value = '';
		}));
	},

	handleDisallow: function(mac, remote, what, ev) {
		return this.act(_('Removing %s from the allow list').format(what), callDisallow(mac, remote));
	}
});
