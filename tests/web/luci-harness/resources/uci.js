'use strict';
'require rpc';
'require baseclass';

/*
 * Harness stand-in for LuCI's uci.js: load/get/set/unset/sections/save/
 * apply over the `uci` ubus object (get, set, delete, apply, confirm), as
 * LuCI's documented LuCI.uci class does. Changes are staged in the page
 * until save(); apply() asks for a rollback-protected apply and confirms.
 */

var callLoad = rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], expect: { values: {} } });
var callSet = rpc.declare({ object: 'uci', method: 'set', params: [ 'config', 'section', 'values' ], reject: true });
var callDelete = rpc.declare({ object: 'uci', method: 'delete', params: [ 'config', 'section', 'options' ], reject: true });
var callApply = rpc.declare({ object: 'uci', method: 'apply', params: [ 'timeout', 'rollback' ], reject: true });
var callConfirm = rpc.declare({ object: 'uci', method: 'confirm', reject: true });

return baseclass.extend({
	__init__: function() {
		this.values = {};
		this.changes = {};
	},

	load: function(configs) {
		var self = this;
		configs = L.toArray(configs);
		return Promise.all(configs.map(function(c) {
			return callLoad(c).then(function(v) { self.values[c] = v; });
		})).then(function() { return configs; });
	},

	get: function(conf, sid, opt) {
		var s = (this.values[conf] || {})[sid];
		var ch = (this.changes[conf] || {})[sid] || {};
		if (opt == null)
			return s;
		if (opt in ch)
			return ch[opt];
		return s ? (s[opt] == null ? null : s[opt]) : null;
	},

	set: function(conf, sid, opt, val) {
		var c = this.changes[conf] = this.changes[conf] || {};
		var s = c[sid] = c[sid] || {};
		s[opt] = (val == null || val === '') ? null : val;
	},

	unset: function(conf, sid, opt) {
		this.set(conf, sid, opt, null);
	},

	sections: function(conf, type) {
		var v = this.values[conf] || {};
		return Object.keys(v).map(function(k) { return v[k]; })
			.filter(function(s) { return !type || s['.type'] == type; });
	},

	save: function() {
		var self = this, tasks = [];
		Object.keys(this.changes).forEach(function(conf) {
			Object.keys(self.changes[conf]).forEach(function(sid) {
				var set = {}, del = [], ch = self.changes[conf][sid];
				Object.keys(ch).forEach(function(o) {
					if (ch[o] == null)
						del.push(o);
					else
						set[o] = ch[o];
				});
				if (Object.keys(set).length)
					tasks.push(callSet(conf, sid, set));
				if (del.length)
					tasks.push(callDelete(conf, sid, del));
			});
		});
		return Promise.all(tasks).then(function() {
			var confs = Object.keys(self.changes);
			self.changes = {};
			return self.load(confs);
		});
	},

	apply: function(timeout) {
		return callApply(timeout || 10, true).then(function() { return callConfirm(); });
	}
});
