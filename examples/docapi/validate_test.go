package main

import (
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

var today = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// validForm returns valid form values for a card of kind k.
func validForm(k *kind) map[string]string {
	switch k {
	case permis:
		return map[string]string{
			"numero_permis": "12/345678", "nom_fr": "El Idrissi", "prenom_fr": "Salma",
			"nom_ar": "الإدريسي", "prenom_ar": "سلمى", "date_naissance": "1990-01-01",
			"lieu_naissance": "Fès", "date_delivrance": "2015-05-20", "date_expiration": "2025-05-19",
			"categories": "A1, B",
		}
	case cin:
		return map[string]string{
			"numero_cin": "BK123456", "nom_fr": "Benali", "prenom_fr": "Omar", "nom_ar": "بنعلي",
			"date_naissance": "1985-12-31", "sexe": "M", "adresse": "12 rue de Fès, Rabat",
			"date_expiration": "2030-01-01",
		}
	default:
		return map[string]string{
			"numero_immatriculation": "12345-أ-6", "proprietaire": "Omar Benali", "marque": "Dacia",
			"modele": "Logan", "numero_chassis": "UU1LSDAAH12345678", "carburant": "diesel",
			"puissance_fiscale": "6", "date_mise_en_circulation": "2019-05-02", "date_validite": "2029-05-01",
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			vals, err := validate(k, validForm(k), today)
			if err != nil {
				t.Fatal(err)
			}
			if len(vals) != len(k.fields) {
				t.Errorf("got %d values, want one per field (%d)", len(vals), len(k.fields))
			}
		})
	}
	vals, err := validate(permis, validForm(permis), today)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"nom_fr":          "El Idrissi",
		"date_naissance":  time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC),
		"categories":      []string{"A1", "B"},
		"date_expiration": time.Date(2025, 5, 19, 0, 0, 0, 0, time.UTC),
	}
	for k, v := range want {
		if !reflect.DeepEqual(vals[k], v) {
			t.Errorf("%s = %#v, want %#v", k, vals[k], v)
		}
	}
	vals, _ = validate(gris, validForm(gris), today)
	if vals["puissance_fiscale"] != int32(6) {
		t.Errorf("puissance_fiscale = %#v, want int32(6)", vals["puissance_fiscale"])
	}
}

func TestValidateOptionalFieldsMayBeLeftOut(t *testing.T) {
	form := map[string]string{"numero_cin": "A1", "nom_fr": "Tazi", "prenom_fr": "Imane", "date_naissance": "2000-02-29", "adresse": "  "}
	vals, err := validate(cin, form, today)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nom_ar", "sexe", "adresse", "date_expiration"} {
		if vals[name] != nil {
			t.Errorf("%s = %#v, want nil", name, vals[name])
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		kind   *kind
		change map[string]string // "" deletes the field
		want   []string          // the fields named in the problems
	}{
		{"missing required", permis, map[string]string{"nom_fr": "", "categories": ""}, []string{"nom_fr", "categories"}},
		{"blank required", cin, map[string]string{"numero_cin": "   "}, []string{"numero_cin"}},
		{"date not ISO", permis, map[string]string{"date_naissance": "01/02/1990"}, []string{"date_naissance"}},
		{"date unpadded", cin, map[string]string{"date_naissance": "1990-1-2"}, []string{"date_naissance"}},
		{"date impossible", cin, map[string]string{"date_naissance": "1990-02-30"}, []string{"date_naissance"}},
		{"date out of range", cin, map[string]string{"date_expiration": "2200-01-01"}, []string{"date_expiration"}},
		{"birth in the future", permis, map[string]string{"date_naissance": "2025-06-02"}, []string{"date_naissance"}},
		{"expiry before issue", permis, map[string]string{"date_expiration": "2015-05-19"}, []string{"date_expiration"}},
		{"validity before first registration", gris, map[string]string{"date_validite": "2019-05-01"}, []string{"date_validite"}},
		{"Arabic in a Latin name", cin, map[string]string{"nom_fr": "بنعلي"}, []string{"nom_fr"}},
		{"Latin in an Arabic name", cin, map[string]string{"nom_ar": "Benali"}, []string{"nom_ar"}},
		{"digits in a name", permis, map[string]string{"prenom_fr": "Salma2"}, []string{"prenom_fr"}},
		{"name too long", permis, map[string]string{"nom_fr": strings.Repeat("a", 101)}, []string{"nom_fr"}},
		{"control character", cin, map[string]string{"adresse": "a\x00b"}, []string{"adresse"}},
		{"invalid UTF-8", cin, map[string]string{"adresse": "a\xffb"}, []string{"adresse"}},
		{"document number", permis, map[string]string{"numero_permis": "12 34"}, []string{"numero_permis"}},
		{"document number leading dash", cin, map[string]string{"numero_cin": "-12"}, []string{"numero_cin"}},
		{"category", permis, map[string]string{"categories": "B, b"}, []string{"categories"}},
		{"category twice", permis, map[string]string{"categories": "B,B"}, []string{"categories"}},
		{"no category", permis, map[string]string{"categories": " , "}, []string{"categories"}},
		{"sexe", cin, map[string]string{"sexe": "X"}, []string{"sexe"}},
		{"carburant", gris, map[string]string{"carburant": "kerosene"}, []string{"carburant"}},
		{"puissance not a number", gris, map[string]string{"puissance_fiscale": "six"}, []string{"puissance_fiscale"}},
		{"puissance out of range", gris, map[string]string{"puissance_fiscale": "100"}, []string{"puissance_fiscale"}},
		{"VIN length", gris, map[string]string{"numero_chassis": "UU1LSDAAH1234567"}, []string{"numero_chassis"}},
		{"VIN letter O", gris, map[string]string{"numero_chassis": "UU1LSDAAO12345678"}, []string{"numero_chassis"}},
		{"plate without digits", gris, map[string]string{"numero_immatriculation": "ABC"}, []string{"numero_immatriculation"}},
		{"unknown fields", cin, map[string]string{"numero_permis": "1", "zz": "1"}, []string{"numero_permis", "zz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := maps.Clone(validForm(tt.kind))
			for k, v := range tt.change {
				form[k] = v
				if v == "" {
					delete(form, k)
				}
			}
			_, err := validate(tt.kind, form, today)
			var ve *validationError
			if !errors.As(err, &ve) {
				t.Fatalf("validate: %v, want a *validationError", err)
			}
			if len(ve.problems) != len(tt.want) {
				t.Fatalf("problems %q, want one for each of %q", ve.problems, tt.want)
			}
			for i, name := range tt.want {
				if got := ve.problems[i]; len(got) < len(name)+1 || got[:len(name)+1] != name+":" {
					t.Errorf("problem %d = %q, want it about %s", i, got, name)
				}
			}
		})
	}
}
