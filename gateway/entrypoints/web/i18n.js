/* Texts of the citizen page in French, German and English. */
"use strict";
window.PASSERELLE_I18N = {
  fr: {
    skip: "Aller au contenu", brand: "Passerelle – mes données", language: "Langue",
    title: "Qui a consulté mes données",
    intro: "Chaque fois qu'une administration consulte vos données via Passerelle, la consultation est inscrite dans un journal infalsifiable. Vous voyez ici chaque accès, son motif et sa base légale.",
    signin: "Connexion", demoNote: "Démonstration : connectez-vous comme citoyen de démonstration en saisissant un numéro d'identification de démonstration (voir « gateway demo people »).",
    nid: "Numéro d'identification national (13 chiffres)", nidHint: "Par exemple 1990010112345.",
    demoSignin: "Se connecter comme ce citoyen de démonstration",
    tokenLabel: "Jeton d'accès de votre fournisseur d'identité électronique", useToken: "Utiliser ce jeton",
    sections: "Rubriques", navAccesses: "Mes consultations", navConsents: "Mes consentements", signout: "Se déconnecter",
    accessesTitle: "Consultations de mes données", filter: "Filtrer", since: "Du", until: "Au",
    agency: "Administration", purpose: "Finalité", all: "Toutes", apply: "Appliquer", reset: "Réinitialiser",
    more: "Afficher plus", exportTitle: "Télécharger une copie (RGPD art. 15)", exportJson: "Télécharger en JSON",
    exportCsv: "Télécharger en CSV", consentsTitle: "Mes consentements",
    consentsIntro: "Certaines consultations exigent votre consentement. Vous pouvez retirer un consentement actif à tout moment ; les consultations déjà faites restent inscrites.",
    footer: "Passerelle inscrit chaque consultation avant l'envoi des données ; l'inscription ne peut pas être modifiée sans que cela se voie.",
    summary: (n) => n === 0 ? "Aucune consultation." : n === 1 ? "1 consultation." : `${n} consultations.`,
    hidden: (n) => `${n} consultation(s) ne sont pas encore affichées : la loi permet de les différer (par exemple pendant une enquête). Elles apparaîtront à la fin du délai.`,
    service: "Service", fields: "Données", legalBasis: "Base légale", legalReference: "Texte", consent: "Consentement",
    outcome: "Résultat", ok: "Données transmises", refused: "Refusée", error: "Échec", reason: "Motif", ai: "Système automatisé (IA) déclaré",
    checked: "Vérification seulement, aucune donnée transmise", checkAnswer: "Réponse donnée", checkAllowed: "La consultation serait permise",
    checkNote: (who, service) => `${who} a vérifié si elle pourrait consulter vos données (${service}). Aucune donnée n'a été transmise, mais la réponse lui a indiqué si la consultation serait permise.`,
    thirdPartyNote: (who) => `Vos données ont été transmises dans une réponse concernant une autre personne : ${who} a consulté les données de quelqu'un d'autre (par exemple un membre de votre ménage ou une société que vous dirigez), et la réponse contenait les données vous concernant indiquées ci-dessous.`,
    recordId: "N° d'inscription", signedIn: "Vous êtes connecté.", signedOut: "Vous êtes déconnecté.",
    loading: "Chargement…", loaded: (n) => `${n} consultation(s) affichée(s).`, failed: "La demande a échoué : ",
    noConsents: "Aucun consentement.", consentsUnavailable: "La gestion des consentements n'est pas disponible.",
    granted: "Donné le", expires: "Expire le", noExpiry: "sans échéance", singleUse: "valable pour une seule consultation",
    revoke: "Retirer ce consentement", revoked: "Consentement retiré.", revokeLabel: (who) => `Retirer ce consentement : ${who}`,
    statusActive: "Actif", statusRevoked: "Retiré", statusExpired: "Expiré", statusSpent: "Utilisé", categories: "Catégories",
    expired: "Votre session a expiré ; veuillez vous reconnecter.",
    basis: { "A6-1-a": "RGPD art. 6(1)(a) – consentement", "A6-1-b": "RGPD art. 6(1)(b) – contrat", "A6-1-c": "RGPD art. 6(1)(c) – obligation légale", "A6-1-d": "RGPD art. 6(1)(d) – intérêts vitaux", "A6-1-e": "RGPD art. 6(1)(e) – mission d'intérêt public", "A6-1-f": "RGPD art. 6(1)(f) – intérêts légitimes" },
    cat: { IDENTIFIER: "identifiant", NAME: "nom", BIRTH: "naissance", SEX: "sexe", NATIONALITY: "nationalité", ADDRESS: "adresse", CIVIL_STATUS: "état civil", HOUSEHOLD: "ménage", INCOME: "revenus", TAX_STATUS: "situation fiscale", COMPANY: "société", COMPANY_OFFICERS: "dirigeants" },
  },
  de: {
    skip: "Zum Inhalt springen", brand: "Passerelle – meine Daten", language: "Sprache",
    title: "Wer hat meine Daten abgerufen",
    intro: "Jedes Mal, wenn eine Behörde Ihre Daten über Passerelle abruft, wird der Abruf in einem fälschungssicheren Protokoll festgehalten. Hier sehen Sie jeden Zugriff, seinen Zweck und seine Rechtsgrundlage.",
    signin: "Anmelden", demoNote: "Demonstration: Melden Sie sich als Demo-Bürger an, indem Sie eine Demo-Identifikationsnummer eingeben (siehe „gateway demo people“).",
    nid: "Nationale Identifikationsnummer (13 Ziffern)", nidHint: "Zum Beispiel 1990010112345.",
    demoSignin: "Als dieser Demo-Bürger anmelden",
    tokenLabel: "Zugriffstoken Ihres elektronischen Identitätsanbieters", useToken: "Dieses Token verwenden",
    sections: "Bereiche", navAccesses: "Meine Abrufe", navConsents: "Meine Einwilligungen", signout: "Abmelden",
    accessesTitle: "Abrufe meiner Daten", filter: "Filtern", since: "Von", until: "Bis",
    agency: "Behörde", purpose: "Zweck", all: "Alle", apply: "Anwenden", reset: "Zurücksetzen",
    more: "Mehr anzeigen", exportTitle: "Eine Kopie herunterladen (DSGVO Art. 15)", exportJson: "Als JSON herunterladen",
    exportCsv: "Als CSV herunterladen", consentsTitle: "Meine Einwilligungen",
    consentsIntro: "Manche Abrufe brauchen Ihre Einwilligung. Sie können eine aktive Einwilligung jederzeit widerrufen; bereits erfolgte Abrufe bleiben protokolliert.",
    footer: "Passerelle protokolliert jeden Abruf, bevor Daten gesendet werden; der Eintrag kann nicht unbemerkt geändert werden.",
    summary: (n) => n === 0 ? "Keine Abrufe." : n === 1 ? "1 Abruf." : `${n} Abrufe.`,
    hidden: (n) => `${n} Abruf/Abrufe werden noch nicht angezeigt: Das Gesetz erlaubt einen Aufschub (zum Beispiel während einer Ermittlung). Sie erscheinen nach Ablauf der Frist.`,
    service: "Dienst", fields: "Daten", legalBasis: "Rechtsgrundlage", legalReference: "Gesetzestext", consent: "Einwilligung",
    outcome: "Ergebnis", ok: "Daten übermittelt", refused: "Abgelehnt", error: "Fehlgeschlagen", reason: "Grund", ai: "Gemeldetes automatisiertes System (KI)",
    checked: "Nur Prüfung, keine Daten übermittelt", checkAnswer: "Gegebene Antwort", checkAllowed: "Der Abruf wäre erlaubt",
    checkNote: (who, service) => `${who} hat geprüft, ob sie Ihre Daten abrufen dürfte (${service}). Es wurden keine Daten übermittelt, aber die Antwort hat ihr gesagt, ob der Abruf erlaubt wäre.`,
    thirdPartyNote: (who) => `Ihre Daten wurden in einer Antwort über eine andere Person übermittelt: ${who} hat die Daten einer anderen Person abgerufen (zum Beispiel eines Mitglieds Ihres Haushalts oder eines Unternehmens, das Sie leiten), und die Antwort enthielt die unten genannten Daten über Sie.`,
    recordId: "Eintrag Nr.", signedIn: "Sie sind angemeldet.", signedOut: "Sie sind abgemeldet.",
    loading: "Wird geladen…", loaded: (n) => `${n} Abruf/Abrufe angezeigt.`, failed: "Die Anfrage ist fehlgeschlagen: ",
    noConsents: "Keine Einwilligungen.", consentsUnavailable: "Die Verwaltung der Einwilligungen ist nicht verfügbar.",
    granted: "Erteilt am", expires: "Läuft ab am", noExpiry: "unbefristet", singleUse: "gilt für einen einzigen Abruf",
    revoke: "Einwilligung widerrufen", revoked: "Die Einwilligung ist widerrufen.", revokeLabel: (who) => `Einwilligung widerrufen: ${who}`,
    statusActive: "Aktiv", statusRevoked: "Widerrufen", statusExpired: "Abgelaufen", statusSpent: "Verbraucht", categories: "Kategorien",
    expired: "Ihre Sitzung ist abgelaufen; bitte melden Sie sich erneut an.",
    basis: { "A6-1-a": "DSGVO Art. 6(1)(a) – Einwilligung", "A6-1-b": "DSGVO Art. 6(1)(b) – Vertrag", "A6-1-c": "DSGVO Art. 6(1)(c) – rechtliche Verpflichtung", "A6-1-d": "DSGVO Art. 6(1)(d) – lebenswichtige Interessen", "A6-1-e": "DSGVO Art. 6(1)(e) – Aufgabe im öffentlichen Interesse", "A6-1-f": "DSGVO Art. 6(1)(f) – berechtigte Interessen" },
    cat: { IDENTIFIER: "Kennnummer", NAME: "Name", BIRTH: "Geburt", SEX: "Geschlecht", NATIONALITY: "Staatsangehörigkeit", ADDRESS: "Adresse", CIVIL_STATUS: "Familienstand", HOUSEHOLD: "Haushalt", INCOME: "Einkommen", TAX_STATUS: "Steuerstatus", COMPANY: "Unternehmen", COMPANY_OFFICERS: "Geschäftsführung" },
  },
  en: {
    skip: "Skip to content", brand: "Passerelle – my data", language: "Language",
    title: "Who accessed my data",
    intro: "Every time an administration looks up your data through Passerelle, it is recorded in a tamper-evident log. Here you see each access, why it happened and under which law.",
    signin: "Sign in", demoNote: "Demonstration: sign in as a demo citizen by entering a demo national identification number (see “gateway demo people”).",
    nid: "National identification number (13 digits)", nidHint: "For example 1990010112345.",
    demoSignin: "Sign in as this demo citizen",
    tokenLabel: "Access token from your electronic identity provider", useToken: "Use this token",
    sections: "Sections", navAccesses: "My accesses", navConsents: "My consents", signout: "Sign out",
    accessesTitle: "Accesses to my data", filter: "Filter", since: "From", until: "To",
    agency: "Administration", purpose: "Purpose", all: "All", apply: "Apply", reset: "Reset",
    more: "Show more", exportTitle: "Download a copy (GDPR Art. 15)", exportJson: "Download JSON",
    exportCsv: "Download CSV", consentsTitle: "My consents",
    consentsIntro: "Some lookups need your consent. You can withdraw an active consent at any time; lookups already made stay recorded.",
    footer: "Passerelle records every access before any data is sent; the record cannot be changed unnoticed.",
    summary: (n) => n === 0 ? "No accesses." : n === 1 ? "1 access." : `${n} accesses.`,
    hidden: (n) => `${n} access(es) are not shown yet: the law allows them to be deferred (for example during an investigation). They will appear when the period ends.`,
    service: "Service", fields: "Data", legalBasis: "Legal basis", legalReference: "Legal text", consent: "Consent",
    outcome: "Outcome", ok: "Data sent", refused: "Refused", error: "Failed", reason: "Reason", ai: "Declared automated (AI) system",
    checked: "Check only, no data sent", checkAnswer: "Answer given", checkAllowed: "The lookup would be allowed",
    checkNote: (who, service) => `${who} checked whether it could access your data (${service}). No data was sent, but the answer told it whether the lookup would be allowed.`,
    thirdPartyNote: (who) => `Your data was disclosed in an answer about another person: ${who} looked up someone else (for example a member of your household or a company you manage), and the answer included the data about you listed below.`,
    recordId: "Record no.", signedIn: "You are signed in.", signedOut: "You are signed out.",
    loading: "Loading…", loaded: (n) => `${n} access(es) shown.`, failed: "The request failed: ",
    noConsents: "No consents.", consentsUnavailable: "Consent management is not available.",
    granted: "Given on", expires: "Expires on", noExpiry: "no expiry", singleUse: "valid for one lookup",
    revoke: "Withdraw this consent", revoked: "Consent withdrawn.", revokeLabel: (who) => `Withdraw this consent: ${who}`,
    statusActive: "Active", statusRevoked: "Withdrawn", statusExpired: "Expired", statusSpent: "Used", categories: "Categories",
    expired: "Your session has expired; please sign in again.",
    basis: { "A6-1-a": "GDPR Art. 6(1)(a) – consent", "A6-1-b": "GDPR Art. 6(1)(b) – contract", "A6-1-c": "GDPR Art. 6(1)(c) – legal obligation", "A6-1-d": "GDPR Art. 6(1)(d) – vital interests", "A6-1-e": "GDPR Art. 6(1)(e) – public task", "A6-1-f": "GDPR Art. 6(1)(f) – legitimate interests" },
    cat: { IDENTIFIER: "identifier", NAME: "name", BIRTH: "birth", SEX: "sex", NATIONALITY: "nationality", ADDRESS: "address", CIVIL_STATUS: "civil status", HOUSEHOLD: "household", INCOME: "income", TAX_STATUS: "tax status", COMPANY: "company", COMPANY_OFFICERS: "company officers" },
  },
};

/* Plain words for what the API gives as codes: refusal reasons, registries, legal bases; sign-in and confirmation texts. */
(function (T) {
  const reasons = {
    fr: {
      NO_MANDATE: "cette administration n'a pas d'autorisation pour ces données et cette finalité",
      MANDATE_NOT_YET_VALID: "son autorisation n'était pas encore valable", MANDATE_EXPIRED: "son autorisation avait expiré",
      MANDATE_LIMIT: "la demande dépassait ce que son autorisation permet", FIELD_NOT_ALLOWED: "elle demandait des données que son autorisation ne couvre pas",
      UNKNOWN_PURPOSE: "la finalité indiquée n'existe pas", PURPOSE_MISSING: "aucune finalité n'était indiquée",
      CONSENT_REQUIRED: "votre consentement était nécessaire et vous ne l'aviez pas donné", CONSENT_REVOKED: "vous aviez retiré votre consentement",
      CONSENT_EXPIRED: "votre consentement avait expiré", CONSENT_SPENT: "votre consentement valait pour une seule consultation, déjà faite",
      CONSENT_MISMATCH: "votre consentement ne couvre pas cette administration ou cette finalité", SUBJECT_MISMATCH: "la demande ne vous concernait pas",
      SUBJECT_NOT_FOUND: "le registre ne contient pas ces données", RATE_LIMITED: "l'administration a fait trop de demandes", CONCURRENCY_LIMITED: "l'administration a fait trop de demandes",
      REGISTRY_UNAVAILABLE: "le registre n'était pas joignable", REGISTRY_TIMEOUT: "le registre n'a pas répondu à temps", REGISTRY_BAD_RESPONSE: "le registre a donné une réponse invalide",
      INVALID_ARGUMENT: "la demande était mal formée", CALLER_FIELD_INVALID: "la demande était mal formée", INTERNAL: "une erreur technique s'est produite",
      other: "la demande a été refusée",
    },
    de: {
      NO_MANDATE: "diese Behörde ist für diese Daten und diesen Zweck nicht befugt",
      MANDATE_NOT_YET_VALID: "ihre Befugnis galt noch nicht", MANDATE_EXPIRED: "ihre Befugnis war abgelaufen",
      MANDATE_LIMIT: "die Anfrage ging über ihre Befugnis hinaus", FIELD_NOT_ALLOWED: "sie verlangte Daten, die ihre Befugnis nicht abdeckt",
      UNKNOWN_PURPOSE: "den angegebenen Zweck gibt es nicht", PURPOSE_MISSING: "es war kein Zweck angegeben",
      CONSENT_REQUIRED: "Ihre Einwilligung war nötig und lag nicht vor", CONSENT_REVOKED: "Sie hatten Ihre Einwilligung widerrufen",
      CONSENT_EXPIRED: "Ihre Einwilligung war abgelaufen", CONSENT_SPENT: "Ihre Einwilligung galt für einen einzigen Abruf, der schon erfolgt war",
      CONSENT_MISMATCH: "Ihre Einwilligung deckt diese Behörde oder diesen Zweck nicht ab", SUBJECT_MISMATCH: "die Anfrage betraf nicht Sie",
      SUBJECT_NOT_FOUND: "das Register enthält diese Daten nicht", RATE_LIMITED: "die Behörde hat zu viele Anfragen gestellt", CONCURRENCY_LIMITED: "die Behörde hat zu viele Anfragen gestellt",
      REGISTRY_UNAVAILABLE: "das Register war nicht erreichbar", REGISTRY_TIMEOUT: "das Register hat nicht rechtzeitig geantwortet", REGISTRY_BAD_RESPONSE: "das Register hat eine ungültige Antwort gegeben",
      INVALID_ARGUMENT: "die Anfrage war fehlerhaft", CALLER_FIELD_INVALID: "die Anfrage war fehlerhaft", INTERNAL: "ein technischer Fehler ist aufgetreten",
      other: "die Anfrage wurde abgelehnt",
    },
    en: {
      NO_MANDATE: "this administration is not authorised for this data and purpose",
      MANDATE_NOT_YET_VALID: "its authorisation was not valid yet", MANDATE_EXPIRED: "its authorisation had expired",
      MANDATE_LIMIT: "the request went beyond its authorisation", FIELD_NOT_ALLOWED: "it asked for data its authorisation does not cover",
      UNKNOWN_PURPOSE: "the stated purpose does not exist", PURPOSE_MISSING: "no purpose was stated",
      CONSENT_REQUIRED: "your consent was needed and you had not given it", CONSENT_REVOKED: "you had withdrawn your consent",
      CONSENT_EXPIRED: "your consent had expired", CONSENT_SPENT: "your consent was for one lookup, already made",
      CONSENT_MISMATCH: "your consent does not cover this administration or purpose", SUBJECT_MISMATCH: "the request was not about you",
      SUBJECT_NOT_FOUND: "the register does not hold this data", RATE_LIMITED: "the administration made too many requests", CONCURRENCY_LIMITED: "the administration made too many requests",
      REGISTRY_UNAVAILABLE: "the register could not be reached", REGISTRY_TIMEOUT: "the register did not answer in time", REGISTRY_BAD_RESPONSE: "the register gave an invalid answer",
      INVALID_ARGUMENT: "the request was malformed", CALLER_FIELD_INVALID: "the request was malformed", INTERNAL: "a technical error occurred",
      other: "the request was refused",
    },
  };
  const registries = {
    fr: { population: "Registre national des personnes physiques", business: "Registre de commerce et des sociétés", tax: "Administration des contributions directes", other: "un registre" },
    de: { population: "Nationales Register der natürlichen Personen", business: "Handels- und Gesellschaftsregister", tax: "Steuerverwaltung", other: "ein Register" },
    en: { population: "National register of natural persons", business: "Trade and companies register", tax: "Direct tax administration", other: "a register" },
  };
  const basis = {
    fr: { "A6-1-a": "votre consentement (RGPD, art. 6, par. 1, a)", "A6-1-b": "un contrat avec vous (RGPD, art. 6, par. 1, b)", "A6-1-c": "une obligation légale (RGPD, art. 6, par. 1, c)", "A6-1-d": "la protection d'intérêts vitaux (RGPD, art. 6, par. 1, d)", "A6-1-e": "une mission d'intérêt public (RGPD, art. 6, par. 1, e)", "A6-1-f": "des intérêts légitimes (RGPD, art. 6, par. 1, f)", other: "une base légale" },
    de: { "A6-1-a": "Ihre Einwilligung (DSGVO Art. 6 Abs. 1 Buchst. a)", "A6-1-b": "ein Vertrag mit Ihnen (DSGVO Art. 6 Abs. 1 Buchst. b)", "A6-1-c": "eine rechtliche Verpflichtung (DSGVO Art. 6 Abs. 1 Buchst. c)", "A6-1-d": "der Schutz lebenswichtiger Interessen (DSGVO Art. 6 Abs. 1 Buchst. d)", "A6-1-e": "eine Aufgabe im öffentlichen Interesse (DSGVO Art. 6 Abs. 1 Buchst. e)", "A6-1-f": "berechtigte Interessen (DSGVO Art. 6 Abs. 1 Buchst. f)", other: "eine Rechtsgrundlage" },
    en: { "A6-1-a": "your consent (GDPR Art. 6(1)(a))", "A6-1-b": "a contract with you (GDPR Art. 6(1)(b))", "A6-1-c": "a legal obligation (GDPR Art. 6(1)(c))", "A6-1-d": "protecting vital interests (GDPR Art. 6(1)(d))", "A6-1-e": "a task in the public interest (GDPR Art. 6(1)(e))", "A6-1-f": "legitimate interests (GDPR Art. 6(1)(f))", other: "a legal basis" },
  };
  const more = {
    fr: {
      source: "Source", eidSignin: "Se connecter avec mon identité électronique (eID)", eidNote: "Connectez-vous avec votre identité électronique nationale.",
      checkBadge: "Vérification d'accès", thirdPartyBadge: "Concernant une autre personne",
      confirmTitle: "Retirer ce consentement ?", confirmYes: "Oui, retirer", confirmNo: "Annuler",
      confirmText: (who, purpose) => `Dès maintenant, ${who} ne pourra plus obtenir vos données pour la finalité « ${purpose} » sans un nouveau consentement. Les consultations déjà faites restent inscrites.`,
    },
    de: {
      source: "Quelle", eidSignin: "Mit meiner elektronischen Identität (eID) anmelden", eidNote: "Melden Sie sich mit Ihrer nationalen elektronischen Identität an.",
      checkBadge: "Prüfung der Zugriffsberechtigung", thirdPartyBadge: "Betrifft eine andere Person",
      confirmTitle: "Diese Einwilligung widerrufen?", confirmYes: "Ja, widerrufen", confirmNo: "Abbrechen",
      confirmText: (who, purpose) => `Ab sofort kann ${who} Ihre Daten für den Zweck „${purpose}“ ohne neue Einwilligung nicht mehr abrufen. Bereits erfolgte Abrufe bleiben festgehalten.`,
    },
    en: {
      source: "Source", eidSignin: "Sign in with my electronic identity (eID)", eidNote: "Sign in with your national electronic identity.",
      checkBadge: "Access check", thirdPartyBadge: "About another person",
      confirmTitle: "Withdraw this consent?", confirmYes: "Yes, withdraw", confirmNo: "Cancel",
      confirmText: (who, purpose) => `From now on, ${who} can no longer obtain your data for the purpose “${purpose}” without a new consent. Lookups already made stay recorded.`,
    },
  };
  for (const lang of ["fr", "de", "en"]) {
    Object.assign(T[lang], more[lang], { reasons: reasons[lang], registries: registries[lang], basis: basis[lang] });
  }
})(window.PASSERELLE_I18N);

/* Why an eID sign-in was refused (the gateway sends the reason code back to /me/?signin_error=CODE). */
(function (T) {
  const signin = {
    fr: {
      SIGN_IN_STATE_INVALID: "la connexion a expiré ou a déjà été utilisée ; recommencez", SIGN_IN_PROVIDER_ERROR: "le fournisseur d'identité ne vous a pas connecté",
      SIGN_IN_PROVIDER_UNAVAILABLE: "le fournisseur d'identité n'est pas joignable", SIGN_IN_CODE_REFUSED: "la connexion a expiré ou a déjà été utilisée ; recommencez",
      SIGN_IN_TOKEN_INVALID: "la réponse du fournisseur d'identité n'a pas pu être vérifiée", SIGN_IN_WRONG_AUDIENCE: "la réponse du fournisseur d'identité n'était pas destinée à ce service",
      SIGN_IN_TOKEN_EXPIRED: "la réponse du fournisseur d'identité avait expiré", SIGN_IN_NONCE_MISMATCH: "la réponse du fournisseur d'identité ne correspondait pas à cette connexion",
      SIGN_IN_ASSURANCE_TOO_LOW: "ce moyen d'identification n'offre pas un niveau de garantie suffisant", SIGN_IN_SUBJECT_INVALID: "votre identité électronique ne donne pas de numéro d'identification national valable",
      SESSION_INVALID: "votre session a pris fin ; reconnectez-vous", CSRF_TOKEN_INVALID: "la demande n'a pas pu être vérifiée ; rechargez la page", CROSS_ORIGIN_REFUSED: "une demande venant d'un autre site a été refusée",
    },
    de: {
      SIGN_IN_STATE_INVALID: "die Anmeldung ist abgelaufen oder wurde schon verwendet; bitte erneut beginnen", SIGN_IN_PROVIDER_ERROR: "der Identitätsanbieter hat Sie nicht angemeldet",
      SIGN_IN_PROVIDER_UNAVAILABLE: "der Identitätsanbieter ist nicht erreichbar", SIGN_IN_CODE_REFUSED: "die Anmeldung ist abgelaufen oder wurde schon verwendet; bitte erneut beginnen",
      SIGN_IN_TOKEN_INVALID: "die Antwort des Identitätsanbieters konnte nicht geprüft werden", SIGN_IN_WRONG_AUDIENCE: "die Antwort des Identitätsanbieters war nicht für diesen Dienst bestimmt",
      SIGN_IN_TOKEN_EXPIRED: "die Antwort des Identitätsanbieters war abgelaufen", SIGN_IN_NONCE_MISMATCH: "die Antwort des Identitätsanbieters gehörte nicht zu dieser Anmeldung",
      SIGN_IN_ASSURANCE_TOO_LOW: "dieses Identifizierungsmittel bietet kein ausreichendes Vertrauensniveau", SIGN_IN_SUBJECT_INVALID: "Ihre elektronische Identität liefert keine gültige nationale Identifikationsnummer",
      SESSION_INVALID: "Ihre Sitzung ist beendet; bitte melden Sie sich erneut an", CSRF_TOKEN_INVALID: "die Anfrage konnte nicht geprüft werden; bitte laden Sie die Seite neu", CROSS_ORIGIN_REFUSED: "eine Anfrage von einer anderen Website wurde abgelehnt",
    },
    en: {
      SIGN_IN_STATE_INVALID: "the sign-in expired or was already used; please start again", SIGN_IN_PROVIDER_ERROR: "the identity provider did not sign you in",
      SIGN_IN_PROVIDER_UNAVAILABLE: "the identity provider cannot be reached", SIGN_IN_CODE_REFUSED: "the sign-in expired or was already used; please start again",
      SIGN_IN_TOKEN_INVALID: "the identity provider's answer could not be verified", SIGN_IN_WRONG_AUDIENCE: "the identity provider's answer was meant for another service",
      SIGN_IN_TOKEN_EXPIRED: "the identity provider's answer had expired", SIGN_IN_NONCE_MISMATCH: "the identity provider's answer did not belong to this sign-in",
      SIGN_IN_ASSURANCE_TOO_LOW: "this means of identification does not give a high enough level of assurance", SIGN_IN_SUBJECT_INVALID: "your electronic identity gives no valid national identification number",
      SESSION_INVALID: "your session has ended; please sign in again", CSRF_TOKEN_INVALID: "the request could not be verified; please reload the page", CROSS_ORIGIN_REFUSED: "a request from another site was refused",
    },
  };
  const failed = { fr: "Connexion refusée : ", de: "Anmeldung abgelehnt: ", en: "Sign-in refused: " };
  for (const lang of ["fr", "de", "en"]) {
    Object.assign(T[lang].reasons, signin[lang]);
    T[lang].signinFailed = failed[lang];
  }
})(window.PASSERELLE_I18N);
