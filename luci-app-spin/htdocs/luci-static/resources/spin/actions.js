'use strict';
'require baseclass';
'require view';
'require rpc';
'require ui';
'require spin.common as common';

/*
 * What the owner can do from any spin view: block, unblock, quarantine,
 * release and rename a device. The views extend actions.View, so the
 * buttons, the calls, the question before a quarantine and the rename
 * dialog exist once and read the same on every page. A failed call is
 * said in words; either way the view then redraws from fresh data (its
 * refresh(true): true says the owner's action asks for it, so the view
 * redraws even what it keeps still during a poll). A view sets
 * this.methods (common.methods) before it draws buttons, and blockNote to
 * say where a device was blocked from.
 */

var callBlock = rpc.declare({ object: 'spin', method: 'block', params: [ 'mac', 'remote', 'note' ], reject: true });
var callUnblock = rpc.declare({ object: 'spin', method: 'unblock', params: [ 'id' ], reject: true });
var callQuarantine = rpc.declare({ object: 'spin', method: 'quarantine', params: [ 'mac', 'reason' ], reject: true });
var callRelease = rpc.declare({ object: 'spin', method: 'release', params: [ 'mac' ], reject: true });
var callName = rpc.declare({ object: 'spin', method: 'name', params: [ 'mac', 'name' ], reject: true });

var View = view.extend({
	/* does this agent have the method (an action it lacks is not offered) */
	can: function(method) {
		return this.methods.indexOf(method) >= 0;
	},

	/* run an action, say what failed in words, then redraw with fresh data */
	act: function(what, promise) {
		return promise.catch(function(err) {
			ui.addNotification(null, E('p', {}, [ common.failure(what, err) ]), 'danger');
		}).then(L.bind(this.refresh, this, true));
	},

	/* unblock or block, release or quarantine: whichever fits the device
	 * now (a quarantined device is not also offered a block) */
	deviceButtons: function(d, idx, label) {
		var out = [], blk = idx.device[d.mac], q = idx.quarantine[d.mac];
		if (blk && this.can('unblock'))
			out.push(E('button', { 'class': 'btn cbi-button cbi-button-apply', 'data-action': 'unblock',
				'click': ui.createHandlerFn(this, 'handleUnblock', blk.id, label) }, [ _('Unblock') ]));
		else if (!blk && !q && this.can('block'))
			out.push(E('button', { 'class': 'btn cbi-button cbi-button-negative', 'data-action': 'block',
				'click': ui.createHandlerFn(this, 'handleBlockDevice', d.mac, label) }, [ _('Block') ]));
		if (q && this.can('release'))
			out.push(E('button', { 'class': 'btn cbi-button cbi-button-apply', 'data-action': 'release',
				'click': ui.createHandlerFn(this, 'handleRelease', d.mac, label) }, [ _('Release') ]));
		else if (!q && this.can('quarantine'))
			out.push(E('button', { 'class': 'btn cbi-button cbi-button-negative', 'data-action': 'quarantine',
				'click': ui.createHandlerFn(this, 'handleQuarantine', d.mac, label) }, [ _('Quarantine') ]));
		return out;
	},

	renameButton: function(mac, label) {
		if (!this.can('name'))
			return [];
		return [ E('button', { 'class': 'btn cbi-button cbi-button-action', 'data-action': 'rename',
			'click': ui.createHandlerFn(this, 'handleRename', mac, label) }, [ _('Rename') ]) ];
	},

	/* the device itself (no remotes), or its traffic to each of remotes;
	 * without a device, those remotes for every device */
	block: function(what, mac, remotes, note) {
		var calls = remotes ? remotes.map(function(ip) { return callBlock(mac, ip, note); })
			: [ callBlock(mac, undefined, note) ];
		return this.act(_('Blocking %s').format(what), Promise.all(calls));
	},

	handleBlockDevice: function(mac, label, ev) {
		return this.block(label, mac, null, this.blockNote);
	},

	/* one block id, or all the blocks behind what the owner clicked
	 * (not L.toArray: in LuCI it turns a number into a string) */
	handleUnblock: function(ids, label, ev) {
		return this.act(_('Unblocking %s').format(label), Promise.all([].concat(ids).map(function(id) {
			return callUnblock(id);
		})));
	},

	handleQuarantine: function(mac, label, ev) {
		if (!window.confirm(_('Quarantine %s? It keeps its address and name lookups but reaches nothing else until you release it.').format(label)))
			return Promise.resolve();
		return this.act(_('Quarantining %s').format(label), callQuarantine(mac, _('by the owner')));
	},

	handleRelease: function(mac, label, ev) {
		return this.act(_('Releasing %s').format(label), callRelease(mac));
	},

	handleRename: function(mac, label, ev) {
		var input = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': 'spin-rename-input',
			'value': label, 'maxlength': 63, 'aria-label': _('New name') });
		var save = L.bind(function() {
			ui.hideModal();
			return this.act(_('Renaming %s').format(label), callName(mac, input.value.trim()));
		}, this);
		input.addEventListener('keydown', function(ev) { if (ev.key == 'Enter') save(); });
		ui.showModal(_('Rename %s').format(label), [
			E('p', {}, [ _('The name is kept on the router and shown everywhere instead of the name the device gave itself. Leave it empty to go back to that name.') ]),
			input,
			E('div', { 'class': 'right' }, [
				E('button', { 'class': 'btn cbi-button', 'click': ui.hideModal }, [ _('Cancel') ]),
				' ',
				E('button', { 'class': 'btn cbi-button cbi-button-positive', 'id': 'spin-rename-save', 'click': save }, [ _('Save') ])
			])
		]);
		input.focus();
		return Promise.resolve();
	},

	/* the spin views save nothing through LuCI's footer */
	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});

return baseclass.extend({
	View: View
});
