/*
 * luci-lite: the few pieces of LuCI's client runtime that the spin views
 * use, so the very same view files run on a host without LuCI (the page
 * the agent serves itself). It follows LuCI's documented behaviour:
 *
 *  - modules are files under luci-static/resources/, named by their
 *    'require a.b as c' lines, compiled with their dependencies as
 *    arguments; a module that returns a class is instantiated (a view
 *    renders itself into #view when instantiated);
 *  - E(tag, attrs, children), dom.content/append (a bare string child is
 *    markup, an array of strings is text), _() and String.format;
 *  - rpc.declare with params/expect/filter/reject, rpc.list, both over
 *    uhttpd's JSON-RPC shape at env.ubuspath with the session id;
 *  - poll.add/remove/start/stop (one tick a second, a function is not
 *    started again while its promise is pending);
 *  - ui.addNotification, showModal/hideModal, createHandlerFn;
 *  - view.extend with load/render and the footer's handle* buttons.
 *
 * Nothing here is specific to spin; no build step, no dependencies.
 */
(function(window, document) {
'use strict';

var env = Object.assign({
	resource: '/luci-static/resources',
	ubuspath: '/ubus',
	scriptname: '',
	sessionid: '00000000000000000000000000000000',
	pollinterval: 5,
	rpctimeout: 20
}, window.LUCI_ENV || {});

/* -- strings ------------------------------------------------------------ */

var ESC = { '&': '&#38;', '"': '&#34;', '\'': '&#39;', '<': '&#60;', '>': '&#62;' };

if (!String.prototype.format)
	String.prototype.format = function() {
		var args = arguments, n = 0;
		return this.replace(/%(\.\d+)?([sdfxhq%])/g, function(m, prec, type) {
			if (type == '%')
				return '%';
			var v = args[n++];
			switch (type) {
			case 'd': return String(Math.floor(+v || 0));
			case 'f': return (+v || 0).toFixed(prec ? +prec.slice(1) : 6);
			case 'x': return Math.floor(+v || 0).toString(16);
			case 'h':
			case 'q': return String(v == null ? '' : v).replace(/[&"'<>]/g, function(c) { return ESC[c]; });
			default: return v == null ? '' : String(v);
			}
		});
	};

function _(s) { return s; }

/* -- classes ------------------------------------------------------------ */

function Class() {}
Class.extend = function(props) {
	var Super = this;
	var C = function() {
		if (typeof(this.__init__) == 'function')
			this.__init__.apply(this, arguments);
	};
	C.prototype = Object.create(Super.prototype);
	for (var k in props)
		C.prototype[k] = props[k];
	C.prototype.constructor = C;
	C.prototype.super = function(key, args) {
		return Super.prototype[key].apply(this, args || []);
	};
	C.extend = Class.extend;
	C.__base__ = Super.prototype;
	return C;
};
Class.prototype.varargs = function(args, offset) {
	return Array.prototype.slice.call(args, offset || 0).concat(Array.prototype.slice.call(arguments, 2));
};

function isClass(v) {
	return typeof(v) == 'function' && v.prototype instanceof Class;
}

/* -- dom ---------------------------------------------------------------- */

var dom = {
	elem: function(e) {
		return e != null && typeof(e) == 'object' && 'nodeType' in e;
	},
	append: function(node, children) {
		if (!this.elem(node))
			return null;
		if (Array.isArray(children)) {
			for (var i = 0; i < children.length; i++) {
				if (this.elem(children[i]))
					node.appendChild(children[i]);
				else if (children[i] != null)
					node.appendChild(document.createTextNode(String(children[i])));
			}
			return node.lastChild;
		}
		if (typeof(children) == 'function')
			return this.append(node, children(node));
		if (this.elem(children))
			return node.appendChild(children);
		if (children != null) {
			node.innerHTML = String(children);   /* as LuCI: a bare string is markup */
			return node.lastChild;
		}
		return null;
	},
	content: function(node, children) {
		if (!this.elem(node))
			return null;
		while (node.firstChild)
			node.removeChild(node.firstChild);
		return this.append(node, children);
	},
	attr: function(node, key, val) {
		if (val == null)
			return;
		if (typeof(val) == 'function')
			node.addEventListener(key, val);
		else if (typeof(val) == 'object')
			node.setAttribute(key, JSON.stringify(val));
		else
			node.setAttribute(key, val);
	},
	create: function(tag, attrs, children) {
		if (Array.isArray(attrs) || this.elem(attrs) || typeof(attrs) == 'string') {
			children = attrs;
			attrs = null;
		}
		var el;
		if (Array.isArray(tag)) {
			el = document.createDocumentFragment();
			this.append(el, tag);
			return el;
		}
		el = this.elem(tag) ? tag : document.createElement(tag);
		for (var k in (attrs || {}))
			this.attr(el, k, attrs[k]);
		this.append(el, children);
		return el;
	},
	bindClassInstance: function(node, inst) {
		node.__luci_instance = inst;
	},
	findClassInstance: function(node) {
		for (; node; node = node.parentNode)
			if (node.__luci_instance)
				return node.__luci_instance;
		return null;
	},
	callClassMethod: function(node, method) {
		var inst = this.findClassInstance(node);
		if (!inst || typeof(inst[method]) != 'function')
			return null;
		return inst[method].apply(inst, Array.prototype.slice.call(arguments, 2));
	}
};

function E() {
	return dom.create.apply(dom, arguments);
}

/* -- L ------------------------------------------------------------------ */

var L = {
	env: env,
	Class: Class,
	dom: dom,
	bind: function(fn, self) {
		var extra = Array.prototype.slice.call(arguments, 2);
		return function() {
			return fn.apply(self, extra.concat(Array.prototype.slice.call(arguments)));
		};
	},
	isObject: function(v) {
		return v != null && typeof(v) == 'object' && !Array.isArray(v);
	},
	toArray: function(v) {
		return v == null ? [] : (Array.isArray(v) ? v : [ v ]);
	},
	resolveDefault: function(value, defvalue) {
		return Promise.resolve(value).catch(function() { return defvalue; });
	},
	url: function() {
		return env.scriptname + '/' + Array.prototype.slice.call(arguments).join('/');
	},
	resource: function() {
		return env.resource + '/' + Array.prototype.slice.call(arguments).join('/');
	},
	raise: function(type, fmt) {
		var e = new Error(String(fmt).format.apply(String(fmt), Array.prototype.slice.call(arguments, 2)));
		e.name = type;
		throw e;
	},
	/* a view that failed to load: say so in the page, in words */
	error: function(e) {
		var vp = document.getElementById('view') || document.body;
		dom.content(vp, E('div', { 'class': 'alert-message danger' }, [
			E('h4', {}, [ _('This page could not be shown') ]),
			E('p', {}, [ String((e && e.message) || e) ])
		]));
		if (window.console)
			console.error(e);
	}
};

/* -- modules ------------------------------------------------------------ */

var REQUIRE = /^'require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?';$/;
var modules = {};

function compile(name, source) {
	var deps = [], args = [];
	var lines = source.split(/\n/);
	for (var i = 0; i < lines.length; i++) {
		var line = lines[i].trim();
		if (line == '' || line == '\'use strict\';')
			continue;
		var m = line.match(REQUIRE);
		if (!m)
			break;
		deps.push(m[1]);
		args.push(m[2] || m[1].replace(/[^a-zA-Z0-9_]/g, '_'));
	}
	return Promise.all(deps.map(L.require)).then(function(values) {
		var fn = Function.apply(null, args.concat([ source + '\n//# sourceURL=' + L.resource(name.replace(/\./g, '/') + '.js') ]));
		var res = fn.apply(window, values);
		/* as LuCI: a module must yield a class, and is used as its instance */
		if (!isClass(res))
			L.raise('TypeError', '"%s" factory yields invalid constructor', name);
		return new res();
	});
}

L.require = function(name) {
	if (!modules[name])
		modules[name] = fetch(L.resource(name.replace(/\./g, '/') + '.js'), { credentials: 'same-origin' })
			.then(function(res) {
				if (!res.ok)
					L.raise('NetworkError', 'Cannot load module %s: HTTP %d', name, res.status);
				return res.text();
			})
			.then(function(text) { return compile(name, text); });
	return modules[name];
};

L.define = function(name, value) {
	modules[name] = Promise.resolve(value);
};

/* -- rpc: uhttpd's /ubus JSON-RPC ---------------------------------------- */

var rpcId = 1, rpcSession = env.sessionid, rpcBase = env.ubuspath.replace(/\/$/, '');
var rpcInterceptors = [];

var STATUS_TEXT = {
	0: 'Command OK', 1: 'Invalid command', 2: 'Invalid argument', 3: 'Method not found',
	4: 'Resource not found', 5: 'No data received', 6: 'Permission denied', 7: 'Request timeout',
	8: 'Not supported', 9: 'Unspecified error', 10: 'Connection lost'
};

var Rpc = Class.extend({
	post: function(msg) {
		var q = msg.params && msg.method == 'call' ? '/' + msg.params[1] + '.' + msg.params[2] : '';
		var ctl = window.AbortController ? new AbortController() : null;
		var timer = ctl ? setTimeout(function() { ctl.abort(); }, env.rpctimeout * 1000) : null;
		var headers = { 'Content-Type': 'application/json' };
		if (env.token)   /* the agent's own listener, shared beyond loopback */
			headers['Authorization'] = 'Bearer ' + env.token;
		return fetch(rpcBase + q, {
			method: 'POST', credentials: 'same-origin', signal: ctl ? ctl.signal : undefined,
			headers: headers, body: JSON.stringify(msg)
		}).finally(function() { clearTimeout(timer); });
	},

	reply: function(req, res) {
		if (!res.ok)
			L.raise('RPCError', 'RPC call to %s/%s failed with HTTP error %d: %s',
				req.object, req.method, res.status, res.statusText || '?');
		return res.json().then(function(msg) {
			return Promise.all(rpcInterceptors.map(function(fn) { return fn(msg, req); })).then(function() {
				return msg;
			});
		});
	},

	handle: function(req, msg) {
		var type = Object.prototype.toString, ret = null;
		if (!L.isObject(msg) || msg.jsonrpc != '2.0')
			L.raise('RPCError', 'RPC call to %s/%s returned invalid message frame', req.object, req.method);
		if (L.isObject(msg.error) && msg.error.code && msg.error.message)
			L.raise('RPCError', 'RPC call to %s/%s failed with error %d: %s',
				req.object, req.method, msg.error.code, msg.error.message);
		if (!req.object && !req.method)
			ret = msg.result;
		else if (Array.isArray(msg.result)) {
			if (req.raise && msg.result[0] !== 0)
				L.raise('RPCError', 'RPC call to %s/%s failed with ubus code %d: %s',
					req.object, req.method, msg.result[0], this.getStatusText(msg.result[0]));
			ret = msg.result.length > 1 ? msg.result[1] : msg.result[0];
		}
		if (req.expect) {
			for (var key in req.expect) {
				if (ret != null && key != '')
					ret = ret[key];
				if (ret == null || type.call(ret) != type.call(req.expect[key]))
					ret = req.expect[key];
				break;
			}
		}
		if (typeof(req.filter) == 'function') {
			req.priv[0] = ret;
			req.priv[1] = req.params;
			ret = req.filter.apply(this, req.priv);
		}
		return ret;
	},

	list: function() {
		var self = this;
		var msg = { jsonrpc: '2.0', id: rpcId++, method: 'list',
			params: arguments.length ? Array.prototype.slice.call(arguments) : undefined };
		var req = {};
		return this.post(msg).then(function(res) { return self.reply(req, res); })
			.then(function(m) { return self.handle(req, m); });
	},

	declare: function(options) {
		var self = this;
		return function() {
			var args = Array.prototype.slice.call(arguments);
			var params = {}, p = 0;
			if (Array.isArray(options.params))
				for (p = 0; p < options.params.length; p++)
					params[options.params[p]] = args[p];   /* undefined ones vanish in JSON */
			var priv = [ undefined, undefined ].concat(args.slice(p));
			var req = { expect: options.expect, filter: options.filter, params: params, priv: priv,
				object: options.object, method: options.method, raise: options.reject };
			var msg = { jsonrpc: '2.0', id: rpcId++, method: 'call',
				params: [ rpcSession, options.object, options.method, params ] };
			return self.post(msg).then(function(res) { return self.reply(req, res); })
				.then(function(m) { return self.handle(req, m); });
		};
	},

	getStatusText: function(code) {
		return _(STATUS_TEXT[code] || 'Unknown error code');
	},
	getSessionID: function() { return rpcSession; },
	setSessionID: function(sid) { rpcSession = sid; },
	getBaseURL: function() { return rpcBase; },
	setBaseURL: function(url) { rpcBase = url; },
	addInterceptor: function(fn) { rpcInterceptors.push(fn); return fn; },
	removeInterceptor: function(fn) {
		var i = rpcInterceptors.indexOf(fn);
		if (i >= 0)
			rpcInterceptors.splice(i, 1);
		return i >= 0;
	}
});

/* -- poll --------------------------------------------------------------- */

var Poll = Class.extend({
	__init__: function() {
		this.queue = [];
		this.timer = null;
		this.tick = 0;
	},
	add: function(fn, interval) {
		if (typeof(fn) != 'function')
			return false;
		interval = Math.max(1, Math.floor(+interval || env.pollinterval));
		for (var i = 0; i < this.queue.length; i++)
			if (this.queue[i].fn === fn)
				return false;
		this.queue.push({ fn: fn, i: interval, r: false });
		if (!this.active())
			this.start();
		return true;
	},
	remove: function(fn) {
		var n = this.queue.length;
		this.queue = this.queue.filter(function(e) { return e.fn !== fn; });
		if (!this.queue.length)
			this.stop();
		return this.queue.length != n;
	},
	step: function() {
		var self = this;
		this.queue.forEach(function(e) {
			if (e.r || self.tick % e.i != 0)
				return;
			e.r = true;
			Promise.resolve().then(e.fn).catch(function(err) {
				if (window.console)
					console.error(err);
			}).then(function() { e.r = false; });
		});
		this.tick++;
		this.timer = setTimeout(L.bind(this.step, this), 1000);
	},
	start: function() {
		if (this.active())
			return false;
		this.tick = 0;
		this.timer = setTimeout(L.bind(this.step, this), 1000);
		window.dispatchEvent(new CustomEvent('poll-start'));
		return true;
	},
	stop: function() {
		if (!this.active())
			return false;
		clearTimeout(this.timer);
		this.timer = null;
		window.dispatchEvent(new CustomEvent('poll-stop'));
		return true;
	},
	active: function() {
		return this.timer != null;
	}
});

/* -- ui ----------------------------------------------------------------- */

var Ui = Class.extend({
	addNotification: function(title, children) {
		var classes = Array.prototype.slice.call(arguments, 2);
		var box = document.getElementById('maincontent') || document.body;
		var msg = E('div', { 'class': 'alert-message fade-in', 'role': 'alert' }, [
			E('div', { 'style': 'display:flex' }, [
				E('div', { 'style': 'flex:10' }, []),
				E('div', { 'style': 'flex:1 1 auto;display:flex' }, [
					E('button', { 'class': 'btn', 'style': 'margin-left:auto;margin-top:auto',
						'click': function(ev) { var n = ev.target.closest('.alert-message'); n.parentNode.removeChild(n); }
					}, [ _('Dismiss') ])
				])
			])
		]);
		if (title != null)
			dom.append(msg.firstChild.firstChild, E('h4', {}, [ title ]));
		dom.append(msg.firstChild.firstChild, children);
		classes.forEach(function(c) { msg.classList.add(c); });
		box.insertBefore(msg, box.firstChild);
		return msg;
	},
	showModal: function(title, children) {
		var overlay = document.getElementById('modal_overlay');
		if (!overlay) {
			overlay = E('div', { 'id': 'modal_overlay' }, [ E('div', { 'class': 'modal', 'role': 'dialog', 'aria-modal': 'true' }) ]);
			document.body.appendChild(overlay);
		}
		var dlg = overlay.firstChild;
		dlg.className = 'modal ' + Array.prototype.slice.call(arguments, 2).join(' ');
		dom.content(dlg, []);
		if (title != null)
			dom.append(dlg, E('h4', {}, [ title ]));
		dom.append(dlg, children);
		document.body.classList.add('modal-overlay-active');
		return dlg;
	},
	hideModal: function() {
		document.body.classList.remove('modal-overlay-active');
	},
	createHandlerFn: function(ctx, fn) {
		var args = Array.prototype.slice.call(arguments, 2);
		if (typeof(fn) == 'string')
			fn = ctx[fn];
		if (typeof(fn) != 'function')
			return null;
		return function(ev) {
			var el = ev && ev.currentTarget;
			var res = fn.apply(ctx, args.concat([ ev ]));
			if (!dom.elem(el) || !res || typeof(res.then) != 'function')
				return res;
			el.classList.add('spinning');
			el.disabled = true;
			return Promise.resolve(res).finally(function() {
				el.classList.remove('spinning');
				el.disabled = false;
			});
		};
	}
});

/* -- view --------------------------------------------------------------- */

var View = Class.extend({
	__init__: function() {
		var vp = document.getElementById('view');
		dom.content(vp, E('div', { 'class': 'spinning' }, [ _('Loading view…') ]));
		return Promise.resolve(this.load())
			.then(L.bind(this.render, this))
			.then(L.bind(function(nodes) {
				var vp = document.getElementById('view');
				dom.content(vp, nodes);
				dom.append(vp, this.addFooter());
			}, this))
			.catch(L.error);
	},
	load: function() {},
	render: function() {},
	maps: function() {
		return Array.prototype.slice.call(document.querySelectorAll('#maincontent .cbi-map, #view .cbi-map'));
	},
	handleSave: function(ev) {
		return Promise.all(this.maps().map(function(m) { return dom.callClassMethod(m, 'save'); }));
	},
	handleSaveApply: function(ev, mode) {
		return this.handleSave(ev).then(function() {
			return L.require('ui').then(function(u) { return u.changes ? u.changes.apply(mode == '0') : null; });
		});
	},
	handleReset: function(ev) {
		return Promise.all(this.maps().map(function(m) { return dom.callClassMethod(m, 'reset'); }));
	},
	addFooter: function() {
		var buttons = [];
		if (this.handleSaveApply)
			buttons.push(E('button', { 'class': 'cbi-button cbi-button-apply',
				'click': ui.createHandlerFn(this, 'handleSaveApply') }, [ _('Save & Apply') ]));
		if (this.handleSave)
			buttons.push(E('button', { 'class': 'cbi-button cbi-button-save',
				'click': ui.createHandlerFn(this, 'handleSave') }, [ _('Save') ]));
		if (this.handleReset)
			buttons.push(E('button', { 'class': 'cbi-button cbi-button-reset',
				'click': ui.createHandlerFn(this, 'handleReset') }, [ _('Reset') ]));
		if (!buttons.length)
			return E([]);
		return E('div', { 'class': 'cbi-page-actions' }, buttons);
	}
});

var ui = new Ui(), rpc = new Rpc(), poll = new Poll();

L.define('baseclass', Class);
L.define('dom', dom);
L.define('view', View);
L.define('rpc', rpc);
L.define('poll', poll);
L.define('ui', ui);
L.ui = ui;
L.rpc = rpc;
L.Poll = poll;

window.L = L;
window.E = E;
window._ = _;
})(window, document);
