package config

import (
	"fmt"
	"reflect"
)

// Load is the one configuration loader of both programs: it parses the
// environment into cfg (a pointer to the program's configuration struct)
// and, when ACG_CONFIG names Clowder's cdappconfig.json, lays it over the
// result. What Clowder decides is found in cfg itself: every Kafka, Sources
// and Log setting by its type, and the fields tagged
// clowder:"topic|bindHost|metricsPort|metricsPath|privatePort". A program
// therefore states in its struct what Clowder may change, and no loader
// code is repeated per program.
func Load(cfg any) error {
	if err := Parse(cfg); err != nil {
		return err
	}
	o, err := ClowderFromEnv()
	if err != nil {
		return err
	}
	return o.apply(reflect.ValueOf(cfg).Elem())
}

// apply overlays the struct v (and the structs it holds) in place.
func (o *Overlay) apply(v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		switch x := fv.Addr().Interface().(type) {
		case *Kafka:
			*x = o.Kafka(*x)
			continue
		case *Sources:
			*x = o.Sources(*x)
			continue
		case *Log:
			*x = o.Log(*x)
			continue
		}
		if tag, ok := f.Tag.Lookup("clowder"); ok {
			if err := o.applyTagged(tag, f, fv); err != nil {
				return err
			}
			continue
		}
		if fv.Kind() == reflect.Struct {
			if err := o.apply(fv); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *Overlay) applyTagged(tag string, f reflect.StructField, fv reflect.Value) error {
	switch x := fv.Addr().Interface().(type) {
	case *string:
		switch tag {
		case "topic":
			*x = o.Topic(*x)
		case "bindHost":
			*x = o.BindHost(*x)
		case "metricsPath":
			*x = o.MetricsPath(*x)
		default:
			return fmt.Errorf("configuration: field %s: clowder tag %q does not apply to a string", f.Name, tag)
		}
	case *int:
		switch tag {
		case "metricsPort":
			*x = o.MetricsPort(*x)
		case "privatePort":
			*x = o.PrivatePort(*x)
		default:
			return fmt.Errorf("configuration: field %s: clowder tag %q does not apply to an int", f.Name, tag)
		}
	default:
		return fmt.Errorf("configuration: field %s: a clowder tag on a %s", f.Name, f.Type)
	}
	return nil
}
