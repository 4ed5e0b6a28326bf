"""The access an application asks for, said in plain words on the sign-in page, in Azerbaijani (default),
Russian or English: "read your health record", not "patient/*.rs".

A SMART scope is context/resource.permissions; the words say whose records (yours; the patients your work
gives you access to; the organisation's system), what (all of a record, or one kind of it) and how (see,
add, change, delete). The sign-in page's language comes from the OpenID `ui_locales` parameter, else the
browser's Accept-Language."""
from __future__ import annotations

from .clients import parse_scope

LANGUAGES = ("az", "ru", "en")

_W: dict[str, dict[str, str]] = {
    "az": {"title": "Daxil olun", "asks": "{app} sizdən icazə istəyir:", "user": "İstifadəçi adı",
           "password": "Şifrə", "submit": "Daxil ol və icazə ver", "wrong": "İstifadəçi adı və ya şifrə səhvdir.",
           "slow": "Çox cəhd edildi; {s} saniyədən sonra yenidən cəhd edin.", "error": "Daxil olma xətası",
           "launch": "Təşkilatınızın sistemi tərəfindən {patient} üçün açılıb.",
           "openid": "kim olduğunuzu bilmək (adınız və hesabınız)", "fhirUser": "hesabınıza bağlı qeydi tanımaq",
           "offline_access": "siz çıxandan sonra da girişi saxlamaq", "online_access": "siz daxil olduqca girişi saxlamaq",
           "launch/patient": "hansı pasiyentin qeydi olduğunu bilmək", "launch_scope": "sistemdən açıldığı konteksti almaq",
           "ctx.patient": "sizin qeydinizdə", "ctx.user": "işinizin icazə verdiyi qeydlərdə",
           "ctx.system": "təşkilatın sistemi kimi", "all": "bütün məlumatları", "see": "görmək", "add": "əlavə etmək",
           "change": "dəyişmək", "delete": "silmək", "and": " və ", "other": "başqa icazə: {scope}"},
    "ru": {"title": "Вход", "asks": "{app} просит разрешения:", "user": "Имя пользователя", "password": "Пароль",
           "submit": "Войти и разрешить", "wrong": "Неверное имя пользователя или пароль.",
           "slow": "Слишком много попыток; повторите через {s} с.", "error": "Ошибка входа",
           "launch": "Открыто системой вашей организации для пациента {patient}.",
           "openid": "знать, кто вы (имя и учётная запись)", "fhirUser": "узнать медкарту, связанную с вашей учётной записью",
           "offline_access": "сохранять доступ после вашего выхода", "online_access": "сохранять доступ, пока вы в системе",
           "launch/patient": "знать, чья это медкарта", "launch_scope": "получить контекст, из которого его открыли",
           "ctx.patient": "в вашей медкарте", "ctx.user": "в медкартах, доступных вам по работе",
           "ctx.system": "как система организации", "all": "все данные", "see": "смотреть", "add": "добавлять",
           "change": "изменять", "delete": "удалять", "and": " и ", "other": "другое разрешение: {scope}"},
    "en": {"title": "Sign in", "asks": "{app} asks for your permission to:", "user": "User name",
           "password": "Password", "submit": "Sign in and allow", "wrong": "Wrong user name or password.",
           "slow": "Too many attempts; try again in {s} s.", "error": "Sign-in error",
           "launch": "Opened by your organisation's record system for {patient}.",
           "openid": "know who you are (your name and account)", "fhirUser": "recognise the record linked to your account",
           "offline_access": "keep access after you sign out", "online_access": "keep access while you are signed in",
           "launch/patient": "know whose record it is", "launch_scope": "receive the context it was opened from",
           "ctx.patient": "in your own record", "ctx.user": "in the records your work gives you access to",
           "ctx.system": "as the organisation's system", "all": "all information", "see": "see", "add": "add",
           "change": "change", "delete": "delete", "and": " and ", "other": "another permission: {scope}"},
}
# What one kind of record is, per language (resource types a person is asked about most often)
_TYPES: dict[str, dict[str, str]] = {
    "az": {"Patient": "şəxsi məlumatları", "Observation": "analiz və müşahidələri", "Condition": "diaqnozları",
           "MedicationRequest": "reseptləri", "Immunization": "peyvəndləri", "Encounter": "qəbulları",
           "Consent": "razılıqları", "ExplanationOfBenefit": "sığorta ödənişlərini"},
    "ru": {"Patient": "личные данные", "Observation": "анализы и наблюдения", "Condition": "диагнозы",
           "MedicationRequest": "рецепты", "Immunization": "прививки", "Encounter": "визиты",
           "Consent": "согласия", "ExplanationOfBenefit": "страховые выплаты"},
    "en": {"Patient": "personal details", "Observation": "test results and observations", "Condition": "diagnoses",
           "MedicationRequest": "prescriptions", "Immunization": "vaccinations", "Encounter": "visits",
           "Consent": "consents", "ExplanationOfBenefit": "insurance statements"},
}


def choose(ui_locales: str | None, accept_language: str | None) -> str:
    for part in [*(ui_locales or "").split(), *(accept_language or "").split(",")]:
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "az"


def word(lang: str, key: str, **values: object) -> str:
    text = _W.get(lang, _W["az"]).get(key) or _W["en"][key]
    return text.format(**values) if values else text


def describe(scope: str, lang: str) -> str:
    """One scope in plain words."""
    w = _W.get(lang, _W["az"])
    if scope in ("openid", "fhirUser", "offline_access", "online_access", "launch/patient"):
        return w[scope]
    if scope == "launch":
        return w["launch_scope"]
    parsed = parse_scope(scope)
    if parsed is None:
        return w["other"].format(scope=scope)
    context, rtype, perms, _ = parsed
    what = w["all"] if rtype == "*" else _TYPES.get(lang, {}).get(rtype, rtype)
    verbs = [w[v] for v, letters in (("see", "rs"), ("add", "c"), ("change", "u"), ("delete", "d"))
             if set(letters) & set(perms)]
    return f"{w['and'].join(verbs)}: {what}, {w['ctx.' + context] if 'ctx.' + context in w else context}"


def describe_all(scopes: list[str], lang: str) -> list[str]:
    return list(dict.fromkeys(describe(s, lang) for s in scopes))
