/*
 * The LuCI side that is not LuCI's client runtime, for tests:
 *
 *  - a logged-in session: a random 32-hex session id in L.env.sessionid;
 *  - the menu from the app's menu.d JSON (harness-data/menu.json): the
 *    entries under admin/services/spin become the tabs, ?path= picks one
 *    and its action {type: view, path} names the view to load; an entry
 *    whose depends (acl group, uci config) are missing is not shown;
 *  - in front of /ubus, what uhttpd + rpcd do before the agent sees a
 *    call: a call without the session id, or to a method the app's acl.d
 *    (harness-data/acl.json) does not grant, is answered -32002 "Access
 *    denied" and never reaches the agent; every call is logged in
 *    HARNESS.calls, every refusal in HARNESS.denied;
 *  - rpcd's `uci` object, in the page: get/set/delete/apply/confirm over
 *    harness-data/uci-<config>.json, checked against the acl's uci scope;
 *    an apply is recorded in HARNESS.applied for the test to carry out
 *    (write the file, HUP the agent: what procd's reload trigger does);
 *  - ?fixture=NAME: a recorded agent instead of a live one. spin.* calls
 *    are answered from harness-data/NAME.json ({method: reply}), for
 *    pages no simulated home can fill (20 devices, 200 endpoints); a reply
 *    {"__failed": status, "data": {...}?} is that ubus status instead.
 */
(function() {
'use strict';

var hex = '';
for (var i = 0; i < 32; i++)
	hex += '0123456789abcdef'[Math.floor(Math.random() * 16)];

var H = window.HARNESS = { sid: hex, calls: [], denied: [], applied: [], staged: {}, uci: {}, acl: {}, menu: {} };
window.LUCI_ENV = { resource: '/luci-static/resources', ubuspath: '/ubus', sessionid: hex, pollinterval: 5 };

var realFetch = window.fetch.bind(window);

function answer(id, body) {
	var msg = { jsonrpc: '2.0', id: id };
	for (var k in body)
		msg[k] = body[k];
	return Promise.resolve(new Response(JSON.stringify(msg), { status: 200, headers: { 'Content-Type': 'application/json' } }));
}

/* does the acl grant scope/object/function for read or write? */
function granted(scope, object, fn, write) {
	return Object.keys(H.acl).some(function(group) {
		var g = H.acl[group];
		return (write ? [ 'write' ] : [ 'read', 'write' ]).some(function(mode) {
			var s = g[mode] && g[mode][scope];
			if (!s)
				return false;
			if (Array.isArray(s))
				return s.indexOf(object) >= 0 || s.indexOf('*') >= 0;
			var fns = s[object] || s['*'] || [];
			return fns.indexOf(fn) >= 0 || fns.indexOf('*') >= 0;
		});
	});
}

var UCI_WRITES = { set: true, 'delete': true, add: true, rename: true, order: true };

function uciCall(method, args) {
	var conf = args.config;
	if (method == 'apply') {
		var changes = H.staged;
		Object.keys(changes).forEach(function(c) {
			Object.keys(changes[c]).forEach(function(s) {
				var sec = H.uci[c][s];
				Object.keys(changes[c][s]).forEach(function(o) {
					if (changes[c][s][o] == null)
						delete sec[o];
					else
						sec[o] = changes[c][s][o];
				});
			});
		});
		H.applied.push(changes);
		H.staged = {};
		return [ 0 ];
	}
	if (method == 'confirm')
		return [ 0 ];
	if (!conf || !H.uci[conf])
		return [ 4 ];
	if (!granted('uci', conf, null, !!UCI_WRITES[method]))
		return [ 6 ];
	if (method == 'get')
		return [ 0, { values: JSON.parse(JSON.stringify(H.uci[conf])) } ];
	if (method == 'set' || method == 'delete') {
		if (!H.uci[conf][args.section])
			return [ 4 ];
		var st = H.staged[conf] = H.staged[conf] || {};
		var sec = st[args.section] = st[args.section] || {};
		if (method == 'set')
			Object.keys(args.values || {}).forEach(function(o) { sec[o] = String(args.values[o]); });
		else
			(args.options || []).forEach(function(o) { sec[o] = null; });
		return [ 0 ];
	}
	return [ 3 ];
}

window.fetch = function(url, opts) {
	var u = new URL(url, location.href);
	if (!/^\/ubus(\/|$)/.test(u.pathname) || !opts || opts.method != 'POST')
		return realFetch(url, opts);
	var msg = JSON.parse(opts.body);
	if (msg.method == 'list' && H.fixture) {
		var sig = {};
		Object.keys(H.fixture).forEach(function(m) { sig[m] = {}; });
		return answer(msg.id, { result: { spin: sig } });
	}
	if (msg.method != 'call')
		return realFetch(url, opts);
	var p = msg.params || [];
	H.calls.push({ sid: p[0], object: p[1], method: p[2], args: p[3] || {} });
	if (p[0] !== H.sid)
		return answer(msg.id, { error: { code: -32002, message: 'Access denied' } });
	if (p[1] == 'uci')
		return answer(msg.id, { result: uciCall(p[2], p[3] || {}) });
	if (!granted('ubus', p[1], p[2], false)) {
		H.denied.push(p[1] + '.' + p[2]);
		return answer(msg.id, { error: { code: -32002, message: 'Access denied' } });
	}
	if (H.fixture) {
		var rec = H.fixture[p[2]];
		if (rec && rec.__failed)   /* a recorded failure: [status] or [status, data] */
			return answer(msg.id, { result: rec.data ? [ rec.__failed, rec.data ] : [ rec.__failed ] });
		return answer(msg.id, { result: p[2] in H.fixture ? [ 0, rec ] : [ 3 ] });
	}
	return realFetch(url, opts);
};

function getJSON(path) {
	return realFetch(path).then(function(r) {
		if (!r.ok)
			throw new Error(path + ': HTTP ' + r.status);
		return r.json();
	});
}

H.boot = function() {
	var q = new URLSearchParams(location.search);
	var want = (q.get('path') || 'admin/services/spin').replace(/\/+$/, '');
	var fixture = q.get('fixture');
	return Promise.all([
		getJSON('/luci-static/harness-data/menu.json'),
		getJSON('/luci-static/harness-data/acl.json'),
		getJSON('/luci-static/harness-data/uci-spin.json'),
		fixture && /^[a-z0-9-]+$/.test(fixture) ? getJSON('/luci-static/harness-data/' + fixture + '.json') : null
	]).then(function(res) {
		H.menu = res[0];
		H.acl = res[1];
		H.uci.spin = res[2];
		H.fixture = res[3];
		var usable = function(e) {
			var d = e.depends || {};
			return (d.acl || []).every(function(g) { return H.acl[g]; }) &&
				Object.keys(d.uci || {}).every(function(c) { return H.uci[c]; });
		};
		var entries = Object.keys(H.menu).filter(function(p) {
			return p.indexOf('admin/services/spin/') == 0 && usable(H.menu[p]);
		}).sort(function(a, b) { return (H.menu[a].order || 0) - (H.menu[b].order || 0); });
		var nav = document.getElementById('tabs');
		entries.forEach(function(p) {
			var a = document.createElement('a');
			a.href = '?path=' + p;
			a.textContent = H.menu[p].title;
			a.setAttribute('data-path', p);
			nav.appendChild(a);
		});
		var top = H.menu[want];
		if (top && top.action && top.action.type == 'firstchild')
			want = entries[0];
		else if (top && top.action && top.action.type == 'alias')
			want = 'admin/services/spin/' + top.action.path.split('/').pop();
		var entry = H.menu[want];
		if (!entry || !entry.action || entry.action.type != 'view' || !usable(entry))
			throw new Error('no view at ' + want);
		var link = nav.querySelector('[data-path="' + want + '"]');
		if (link)
			link.setAttribute('aria-current', 'page');
		H.view = entry.action.path;
		return L.require('ui').then(function(ui) {
			/* LuCI's ui.changes.apply: rpcd's rollback-protected apply */
			ui.changes = { apply: function() { return L.require('uci').then(function(uci) { return uci.apply(); }); } };
			return L.require('view.' + entry.action.path.replace(/\//g, '.'));
		});
	}).catch(function(e) {
		H.bootError = String(e && e.message || e);
		document.getElementById('view').textContent = 'harness: ' + H.bootError;
	});
};
})();
