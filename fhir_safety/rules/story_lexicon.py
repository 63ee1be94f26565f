"""The shipped phrase lexicon for ``story_signals`` (data, documented in docs/stories.md).

Categories follow the kinds of incident NHS incident reporting groups (falls, medication,
diagnosis and assessment, monitoring and deterioration, treatment and procedures, pressure
ulcers, infection, discharge and transfer, self-harm safety in mental health care, maternity,
equipment, patient identification) plus three kinds of cue that are not incidents in
themselves: harm outcomes, staff admissions, and understatement ("I'm not one to complain").

Weights: 2.0 = a phrase that alone describes an incident in care ("given another patient's
tablets"); 1.0 = a phrase that needs a second, independent signal ("fell", "intensive care");
0.5 = a weak cue. Patterns are regular expressions over normalised text (lower case, plain
apostrophes). Tuned on the development half of tests/data/stories/labelled.json only.
"""

from __future__ import annotations

from fhir_safety.rules.story_signals import Lexicon, Phrase

__all__ = ["LEXICON"]

_WHO = r"(?:me|us|him|her|them|my \w+|mum|dad|nan|gran|grandad)"
_NEG = r"(?:not|never|n't)"

_PHRASES = (
    # -- falls -------------------------------------------------------------------------------
    Phrase(r"fell(?! asleep| pregnant)", 1.0, "fall"),
    Phrase(
        r"(?:a |had a |another |her |his |the )?falls?(?! asleep| clinic| team| risk)", 1.0, "fall"
    ),
    Phrase(r"found (?:\w+ )?on the floor", 2.0, "fall", "found on the floor: an unwitnessed fall"),
    Phrase(r"ended up on the floor", 2.0, "fall"),
    Phrase(r"slipped|tripped|fallen|falling", 1.0, "fall"),
    Phrase(r"on the floor", 1.0, "fall"),
    # -- medication ---------------------------------------------------------------------------
    Phrase(
        r"wrong (?:medication|medicine|tablets?|drugs?|dose|doses|insulin|injection)",
        2.0,
        "medication",
    ),
    Phrase(r"(?:double|twice) (?:my |the |her |his )?dose", 2.0, "medication"),
    Phrase(r"(?:given|gave|had) (?:\w+ ){0,3}twice", 2.0, "medication"),
    Phrase(r"(?:daily|weekly) instead of (?:weekly|daily)", 2.0, "medication"),
    Phrase(
        r"(?:was|were|wasn't|weren't|was not|were not|never|not been|hadn't been) (?:\w+ )?given",
        1.0,
        "medication",
        "an omitted dose",
    ),
    Phrase(r"(?:missed|late) (?:doses?|insulin|medication|tablets)", 1.0, "medication"),
    Phrase(r"hours late", 1.0, "medication"),
    Phrase(
        r"(?:medication|medicines?|tablets?|drugs?|doses?|insulin|injections?|antibiotics) .{0,30}(?:late|missed|forgotten|omitted)",
        1.0,
        "medication",
    ),
    Phrase(
        r"(?:not|never|n't) (?:been )?(?:given|prescribed|restarted) (?:my|her|his|the) (?:\w+ )?(?:medication|medicines?|tablets?|insulin|injections?|antibiotics|painkillers|pain relief)",
        2.0,
        "medication",
    ),
    Phrase(r"ran (?:far )?too (?:fast|quickly)", 2.0, "medication"),
    Phrase(r"rate was wrong", 2.0, "medication"),
    Phrase(r"crushed", 1.0, "medication"),
    Phrase(r"crushed .{0,40}(?:slow|modified|extended) release", 2.0, "medication"),
    Phrase(
        r"without (?:her|his|my) (?:\w+ )?(?:medicines|medication|tablets|insulin)",
        1.0,
        "medication",
    ),
    Phrase(r"interaction", 1.0, "medication"),
    Phrase(r"(?:prescribed|gave|given) .{0,40}(?:dose for|for a much older)", 2.0, "medication"),
    Phrase(r"toxicity", 1.0, "medication"),
    # -- allergy -------------------------------------------------------------------------------
    Phrase(r"allerg\w* .{0,60}(?:still|anyway|but) (?:given|gave|used|were|was)", 2.0, "allergy"),
    Phrase(r"despite (?:my|her|his|the) allerg\w*", 2.0, "allergy"),
    # -- patient identification -----------------------------------------------------------
    Phrase(r"another patient's", 2.0, "wrong patient"),
    Phrase(r"(?:someone|somebody) else's", 2.0, "wrong patient"),
    Phrase(r"meant for (?:another|the \w+ in the next)", 2.0, "wrong patient"),
    Phrase(
        r"(?:the )?(?:patient|lady|man|woman) in the next (?:bed|cubicle|bay)", 1.0, "wrong patient"
    ),
    Phrase(r"same surname", 1.0, "wrong patient"),
    Phrase(r"wrong (?:patient|baby|knee|leg|arm|side|site|eye)", 2.0, "wrong patient"),
    # -- diagnosis and assessment -----------------------------------------------------------
    Phrase(
        rf"sent (?:{_WHO} )?home",
        1.0,
        "diagnosis",
        "sent home (pairs with a return or a missed diagnosis)",
    ),
    Phrase(r"(?:was|were|been|be) missed", 2.0, "diagnosis"),
    Phrase(r"missed (?:fracture|diagnosis|cancer|heart attack)", 2.0, "diagnosis"),
    Phrase(
        r"(?:told|said) (?:it was|she was|he was) (?:probably )?(?:just )?(?:constipation|indigestion|viral|a virus|normal|drunk|the machine|anxiety)",
        2.0,
        "diagnosis",
    ),
    Phrase(
        r"(?:not|never) (?:been )?(?:picked up|followed up|acted on|identified|spotted)",
        2.0,
        "diagnosis",
    ),
    Phrase(r"(?:three|four|several) (?:times|visits)", 1.0, "diagnosis"),
    Phrase(
        r"should have been (?:identified|looked at|restarted|seen|scanned|picked up)",
        2.0,
        "diagnosis",
    ),
    Phrase(r"(?:never|not) (?:been )?sent", 1.0, "diagnosis"),
    Phrase(r"was reassured", 1.0, "diagnosis"),
    Phrase(r"not (?:been )?(?:x-rayed|scanned|examined)", 1.0, "diagnosis"),
    Phrase(r"should have (?:had|been given)", 1.0, "omission"),
    # -- monitoring and deterioration --------------------------------------------------------
    Phrase(
        r"(?:observations|obs|checks) (?:were )?(?:not|never) (?:repeated|done|checked)",
        2.0,
        "monitoring",
    ),
    Phrase(
        r"(?:nobody|no one|no-one) (?:had |has |was )?(?:answered|came|checked|noticed|helped|told|realised)",
        1.0,
        "monitoring",
    ),
    Phrase(
        r"without (?:being )?(?:checked|checking|weighing|looking|monitoring)", 1.0, "monitoring"
    ),
    Phrase(
        r"despite (?:her|his|my|our|us) (?:crying|asking|complaining|telling)", 1.0, "monitoring"
    ),
    Phrase(r"for hours", 0.5, "monitoring"),
    Phrase(
        r"(?:buzzer|call bell|cord)\b.{0,40}(?:not answered|out of reach|for over an hour|for forty minutes)",
        2.0,
        "monitoring",
    ),
    Phrase(r"out of reach", 1.0, "monitoring"),
    Phrase(r"silenced", 1.0, "monitoring"),
    Phrase(r"left (?:alone|for|in a corridor|on a trolley)", 1.0, "monitoring"),
    Phrase(
        r"(?:not|never|wasn't|weren't) (?:checked|monitored|turned|weighed|repeated)",
        1.0,
        "monitoring",
    ),
    Phrase(r"ignored", 1.0, "monitoring"),
    Phrase(r"waited (?:\d+|five|six|eight) hours", 0.5, "monitoring"),
    # -- pressure ulcers -------------------------------------------------------------------
    Phrase(r"pressure (?:sores?|ulcers?|damage)", 2.0, "pressure ulcer"),
    Phrase(r"grade [234]", 1.0, "pressure ulcer"),
    Phrase(r"sore on (?:his|her|my) (?:heel|bottom|sacrum|back)", 2.0, "pressure ulcer"),
    # -- treatment and procedures ---------------------------------------------------------
    Phrase(r"left inside", 2.0, "procedure"),
    Phrase(r"swab", 1.0, "procedure"),
    Phrase(r"pulled out", 1.0, "procedure"),
    Phrase(r"unsterile", 2.0, "procedure"),
    Phrase(r"burn(?:ed|t)?", 1.0, "procedure"),
    Phrase(r"woke up during", 2.0, "procedure"),
    Phrase(r"nil by mouth", 1.0, "procedure"),
    Phrase(r"malfunction\w*", 1.0, "equipment"),
    Phrase(r"ran out", 1.0, "equipment"),
    Phrase(r"wet floor", 1.0, "environment"),
    # -- infection ----------------------------------------------------------------------------
    Phrase(r"(?:wound|cannula|catheter|line) .{0,30}infect\w*", 1.0, "infection"),
    Phrase(r"infect(?:ion|ed)", 0.5, "infection"),
    # -- discharge and transfer ---------------------------------------------------------------
    Phrase(r"discharged (?:\w+ )?(?:without|too|with no)", 2.0, "discharge"),
    Phrase(r"discharged .{0,60}(?:still|even though)", 2.0, "discharge"),
    Phrase(
        r"sent (?:\w+ )?home (?:too soon|the same day even though|even though|without)",
        2.0,
        "discharge",
    ),
    Phrase(r"no (?:letter|follow up|follow-up)", 1.0, "discharge"),
    # -- mental health safety -------------------------------------------------------------
    Phrase(r"ligature", 2.0, "self-harm safety"),
    Phrase(r"(?:thoughts of ending|suicidal)", 1.0, "self-harm safety"),
    Phrase(r"(?:did not|didn't|not) feel safe", 1.0, "self-harm safety"),
    Phrase(r"walked out (?:of the ward )?unnoticed|unnoticed", 2.0, "self-harm safety"),
    Phrase(r"restraint", 0.5, "self-harm safety"),
    # -- hydration and nutrition ------------------------------------------------------------
    Phrase(r"dehydrated", 1.0, "hydration"),
    Phrase(r"(?:hadn't|had not|not) (?:eaten|drunk)", 1.0, "hydration"),
    Phrase(r"lost (?:nearly |almost |over )?(?:a stone|\d+%|\d+ per cent)", 1.0, "hydration"),
    Phrase(r"choked", 2.0, "hydration"),
    # -- harm outcomes (need an event cue as well) -------------------------------------------
    Phrase(r"intensive care|high dependency|coronary care|special care", 1.0, "harm"),
    Phrase(r"resuscitat\w*", 1.0, "harm"),
    Phrase(r"transfusion", 1.0, "harm"),
    Phrase(r"readmitted|back (?:in|by ambulance|to theatre)|came back", 1.0, "harm"),
    Phrase(r"second operation|another drain|emergency procedure", 1.0, "harm"),
    Phrase(r"septic shock|sepsis", 1.0, "harm"),
    Phrase(r"fractur\w*|broke (?:her|his|my)|broken|breaking", 1.0, "harm"),
    Phrase(r"bleed(?:ing)?|collapsed|clot", 1.0, "harm"),
    Phrase(r"burst", 1.0, "harm"),
    Phrase(r"aspiration pneumonia|ketoacidosis|dka|peritonitis", 1.0, "harm"),
    Phrase(r"died|death", 1.0, "harm"),
    Phrase(
        r"harm(?:ed)?|injur(?:y|ies|ed)|damaged?|permanent\w*|deteriorat\w*|worse|rushed|emergency",
        1.0,
        "harm",
    ),
    Phrase(r"cut (?:her|his|my) head|stitches|banged (?:her|his|my) head", 1.0, "harm"),
    Phrase(r"needed (?:iv )?antibiotics|infection spread|spread to", 1.0, "harm"),
    Phrase(r"delirium|confused|oxygen (?:levels )?(?:had )?dropped|abnormal rhythm", 1.0, "harm"),
    Phrase(r"(?:asthma|bad) attack|melanoma|cancer", 1.0, "harm"),
    Phrase(r"low blood pressure|drowsy|breathless|fighting for breath", 1.0, "harm"),
    # -- staff admissions -------------------------------------------------------------------
    Phrase(r"apologi[sz]ed? for the mix-up|mix-up", 1.0, "admission"),
    Phrase(r"incident form", 1.0, "admission"),
    Phrase(r"(?:later )?admitted (?:the|that)", 1.0, "admission"),
    Phrase(r"by mistake", 1.0, "admission"),
    Phrase(
        r"(?:an |the |a )?(?:error|mistake|blunder)s?|mixed up|wrong|incorrect\w*", 1.0, "error"
    ),
    Phrase(r"(?:delay|delayed|delays)(?: in)?", 1.0, "delay"),
    Phrase(r"took (?:\w+ ){0,3}(?:days|weeks|months|hours) (?:before|to|for)", 1.0, "delay"),
    Phrase(r"(?:missed|forgot|forgotten|overlooked)", 1.0, "omission"),
    Phrase(
        r"(?:not|never|n't) (?:been )?(?:done|seen|reviewed|referred|treated|followed up|chased|rebooked|passed on|handed over)",
        1.0,
        "omission",
    ),
    Phrase(
        r"(?:dismissed|brushed off|fobbed off|didn't listen|did not listen|not listened to|wouldn't listen|nobody listened|no one listened)",
        1.0,
        "not listened to",
    ),
    # -- understatement --------------------------------------------------------------------
    Phrase(r"not one to (?:complain|make a fuss)", 0.5, "understatement", dampable=False),
    Phrase(
        r"nothing major|just saying|a few things to mention", 0.5, "understatement", dampable=False
    ),
    # -- hyperbole: nothing in a sentence about food ----------------------------------------
    Phrase(r"(?:could have been )?(?:very )?dangerous", 0.5, "hyperbole", hyperbole=True),
    Phrase(r"(?:nearly |could )kill\w*|lethal|poison\w*|hazard", 0.5, "hyperbole", hyperbole=True),
)

LEXICON = Lexicon(
    version="0.2.0",
    phrases=_PHRASES,
    negations=(
        r"no",
        r"not",
        r"never",
        r"without",
        r"nothing",
        r"none",
        r"nobody",
        r"no one",
        r"\w+n't",
        r"at no point",
        r"at risk of",
        r"risk of",
        r"prevent\w*",
        r"in case",
        r"might",
        r"worried",
    ),
    praise=(
        r"thank\w*",
        r"grateful",
        r"brilliant",
        r"wonderful",
        r"amazing",
        r"excellent",
        r"fantastic",
        r"outstanding",
        r"superb",
        r"extraordinary",
        r"lovely",
        r"kindly",
        r"reassuring",
        r"(?:couldn't|can't|cannot) fault",
        r"credit to",
        r"saved (?:my|our|his|her) li\w*",
        r"straight away",
        r"immediately",
        r"within (?:seconds|the hour|20 minutes)",
        r"moved (?:very )?quickly",
        r"acted fast",
        r"caught early",
        r"safely",
        r"well looked after",
        r"recovered (?:well|fully)",
        r"thorough",
    ),
    outside_care=(
        r"at home",
        r"at work",
        r"off my bike",
        r"in the street",
        r"in the garden",
        r"before (?:i|he|she|we|they) came in",
        r"before (?:admission|coming in)",
    ),
    food=(
        r"food",
        r"meals?",
        r"custard",
        r"pudding",
        r"pie",
        r"sandwich\w*",
        r"gravy",
        r"chilli",
        r"sprouts",
        r"menu",
        r"breakfast|lunch|dinner|tea",
    ),
)
