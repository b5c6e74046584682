'use strict';
'require baseclass';
'require dom';
'require ui';
'require uci';

/*
 * Harness stand-in for LuCI's form.js: Map, NamedSection and the option
 * classes Value, Flag and ListValue with datatype validation, as LuCI's
 * documented LuCI.form API shapes them (m = new form.Map(config, title,
 * description); s = m.section(form.NamedSection, name, type, title);
 * o = s.option(form.Value, option, title, description); o.datatype ...;
 * return m.render()). The view's Save / Save & Apply find the .cbi-map
 * node and call its save().
 */

var DATATYPES = {
	range: function(v, a, b) { return /^-?[0-9]+$/.test(v) && +v >= a && +v <= b; },
	uinteger: function(v) { return /^[0-9]+$/.test(v); },
	string: function() { return true; }
};

function valid(datatype, v) {
	if (!datatype || v == null || v === '')
		return true;
	var m = String(datatype).match(/^(\w+)(?:\((.*)\))?$/);
	if (!m || !DATATYPES[m[1]])
		return true;
	var args = m[2] ? m[2].split(',').map(Number) : [];
	return DATATYPES[m[1]].apply(null, [ String(v) ].concat(args));
}

var n = 0;

var AbstractValue = baseclass.extend({
	__init__: function(map, section, option, title, description) {
		this.map = map;
		this.section = section;
		this.option = option;
		this.title = title || option;
		this.description = description || '';
		this.rmempty = true;
		this.default = null;
		this.datatype = null;
		this.placeholder = null;
		this.keylist = [];
		this.vallist = [];
	},
	value: function(key, label) {
		this.keylist.push(String(key));
		this.vallist.push(label != null ? label : key);
	},
	cfgvalue: function(sid) {
		return uci.get(this.map.config, sid, this.option);
	},
	render: function(sid) {
		var v = this.cfgvalue(sid);
		this.id = 'widget.cbid.' + this.map.config + '.' + sid + '.' + this.option + '.' + (n++);
		this.widget = this.renderWidget(sid, v != null ? v : this.default);
		return E('div', { 'class': 'cbi-value', 'data-name': this.option }, [
			E('label', { 'class': 'cbi-value-title', 'for': this.id }, [ this.title ]),
			E('div', { 'class': 'cbi-value-field' }, [
				this.widget,
				this.description ? E('div', { 'class': 'cbi-value-description' }, [ this.description ]) : ''
			])
		]);
	},
	isValid: function() {
		var ok = valid(this.datatype, this.formvalue());
		this.widget.classList.toggle('cbi-input-invalid', !ok);
		return ok;
	},
	write: function(sid) {
		var v = this.formvalue(), cur = this.cfgvalue(sid);
		if (v === '' || v == null) {
			if (this.rmempty && cur != null)
				uci.unset(this.map.config, sid, this.option);
		}
		else if (String(v) !== String(cur))
			uci.set(this.map.config, sid, this.option, String(v));
	}
});

var Value = AbstractValue.extend({
	renderWidget: function(sid, v) {
		return E('input', { 'type': this.password ? 'password' : 'text', 'class': 'cbi-input-text', 'id': this.id,
			'name': this.option, 'value': v != null ? v : '', 'placeholder': this.placeholder });
	},
	formvalue: function() {
		return this.widget.value.trim();
	}
});

var Flag = AbstractValue.extend({
	__init__: function() {
		this.super('__init__', arguments);
		this.enabled = '1';
		this.disabled = '0';
	},
	renderWidget: function(sid, v) {
		var box = E('input', { 'type': 'checkbox', 'id': this.id, 'name': this.option });
		box.checked = (v == null ? this.default : v) == this.enabled;
		return box;
	},
	formvalue: function() {
		return this.widget.checked ? this.enabled : this.disabled;
	},
	write: function(sid) {
		var v = this.formvalue(), cur = this.cfgvalue(sid);
		if (String(v) !== String(cur == null ? this.default : cur) || (cur == null && !this.rmempty))
			uci.set(this.map.config, sid, this.option, v);
	}
});

var ListValue = AbstractValue.extend({
	renderWidget: function(sid, v) {
		var self = this;
		return E('select', { 'class': 'cbi-input-select', 'id': this.id, 'name': this.option },
			this.keylist.map(function(k, i) {
				var o = E('option', { 'value': k }, [ self.vallist[i] ]);
				o.selected = (k == v);
				return o;
			}));
	},
	formvalue: function() {
		return this.widget.value;
	}
});

var NamedSection = baseclass.extend({
	__init__: function(map, name, type, title, description) {
		this.map = map;
		this.name = name;
		this.type = type;
		this.title = title;
		this.description = description;
		this.children = [];
	},
	option: function(cls) {
		var o = Object.create(cls.prototype);
		cls.apply(o, [ this.map, this ].concat(Array.prototype.slice.call(arguments, 1)));
		this.children.push(o);
		return o;
	},
	render: function() {
		var name = this.name;
		return E('div', { 'class': 'cbi-section', 'data-section': name }, [
			this.title ? E('h3', {}, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, [ this.description ]) : ''
		].concat(this.children.map(function(o) { return o.render(name); })));
	}
});

var Map = baseclass.extend({
	__init__: function(config, title, description) {
		this.config = config;
		this.title = title;
		this.description = description;
		this.children = [];
	},
	section: function(cls) {
		var s = Object.create(cls.prototype);
		cls.apply(s, [ this ].concat(Array.prototype.slice.call(arguments, 1)));
		this.children.push(s);
		return s;
	},
	options: function() {
		return this.children.reduce(function(acc, s) {
			return acc.concat(s.children.map(function(o) { return [ s, o ]; }));
		}, []);
	},
	render: function() {
		var self = this;
		return uci.load(this.config).then(function() {
			if (!self.children.every(function(s) { return uci.get(self.config, s.name); }))
				L.raise('Error', 'No section %s in /etc/config/%s', self.children[0].name, self.config);
			var node = E('div', { 'class': 'cbi-map', 'id': 'cbi-' + self.config }, [
				self.title ? E('h2', {}, [ self.title ]) : '',
				self.description ? E('div', { 'class': 'cbi-map-descr' }, [ self.description ]) : ''
			].concat(self.children.map(function(s) { return s.render(); })));
			dom.bindClassInstance(node, self);
			return node;
		});
	},
	save: function() {
		var bad = this.options().filter(function(so) { return !so[1].isValid(); });
		if (bad.length) {
			ui.showModal(_('Save error'), [
				E('p', {}, [ _('Some fields are invalid, cannot save values!') ]),
				E('p', {}, [ E('em', {}, [ bad.map(function(so) { return so[1].title; }).join(', ') ]) ]),
				E('div', { 'class': 'right' }, [ E('button', { 'class': 'btn', 'click': ui.hideModal }, [ _('Dismiss') ]) ])
			]);
			return Promise.reject(new Error('invalid fields'));
		}
		this.options().forEach(function(so) { so[1].write(so[0].name); });
		return uci.save();
	}
});

return baseclass.extend({
	Map: Map,
	NamedSection: NamedSection,
	Value: Value,
	Flag: Flag,
	ListValue: ListValue
});
