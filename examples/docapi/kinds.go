package main

// A kind is one sort of identity document. Its name is both the URL segment (/permis/all) and
// the table name; its fields are the card's fields, which are at once the multipart form keys
// of an upload, the JSON keys of a document and the table's columns (see migrations/).
type kind struct {
	name   string
	fields []field
}

// kinds are the documents the seed's service handled, under the seed's French names.
var kinds = []*kind{permis, cin, gris}

// Field rules shared by the kinds.
var (
	nameLatin  = field{typ: textField, max: 100, check: latinName}
	nameArabic = field{typ: textField, max: 100, check: arabicName}
	place      = field{typ: textField, max: 100}
	address    = field{typ: textField, max: 200}
	birthDate  = field{typ: dateField, required: true, past: true}
)

// permis is a driving licence (permis de conduire).
var permis = &kind{
	name: "permis",
	fields: []field{
		{name: "numero_permis", typ: textField, required: true, max: 20, check: documentNumber},
		nameLatin.as("nom_fr", true),
		nameLatin.as("prenom_fr", true),
		nameArabic.as("nom_ar", false),
		nameArabic.as("prenom_ar", false),
		birthDate.as("date_naissance", true),
		place.as("lieu_naissance", false),
		{name: "date_delivrance", typ: dateField, required: true, past: true},
		{name: "date_expiration", typ: dateField, notBefore: "date_delivrance"},
		// Comma-separated licence categories, e.g. "A1,B" (stored as text[]).
		{name: "categories", typ: listField, required: true, max: 12, check: licenceCategory},
	},
}

// cin is a national identity card (carte d'identité nationale).
var cin = &kind{
	name: "cin",
	fields: []field{
		{name: "numero_cin", typ: textField, required: true, max: 12, check: documentNumber},
		nameLatin.as("nom_fr", true),
		nameLatin.as("prenom_fr", true),
		nameArabic.as("nom_ar", false),
		nameArabic.as("prenom_ar", false),
		birthDate.as("date_naissance", true),
		place.as("lieu_naissance", false),
		{name: "sexe", typ: textField, oneOf: []string{"M", "F"}},
		address.as("adresse", false),
		{name: "date_expiration", typ: dateField},
	},
}

// gris is a vehicle registration card (carte grise).
var gris = &kind{
	name: "gris",
	fields: []field{
		{name: "numero_immatriculation", typ: textField, required: true, max: 20, check: plateNumber},
		nameLatin.as("proprietaire", true),
		nameArabic.as("proprietaire_ar", false),
		address.as("adresse", false),
		{name: "marque", typ: textField, required: true, max: 50},
		{name: "modele", typ: textField, max: 50},
		{name: "numero_chassis", typ: textField, max: 17, check: vin},
		{name: "carburant", typ: textField, oneOf: []string{"essence", "diesel", "electrique", "hybride", "gpl"}},
		{name: "puissance_fiscale", typ: intField, min: 1, max: 99},
		{name: "date_mise_en_circulation", typ: dateField, past: true},
		{name: "date_validite", typ: dateField, notBefore: "date_mise_en_circulation"},
	},
}

// as returns a copy of f under another name, required or not.
func (f field) as(name string, required bool) field {
	f.name, f.required = name, required
	return f
}
