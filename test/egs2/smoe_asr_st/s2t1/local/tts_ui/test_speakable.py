"""The speakable-sentence filter of the tts_ui corpus, on handmade examples."""

import pytest

from local.tts_ui.speakable import REASONS, check_pair, dedup_key, normalize, num_words

GOOD_FR = "Une phrase française tout à fait correcte ici"


@pytest.mark.parametrize(
    "en, fr, reason",
    [
        # format specifiers
        ("Could not open the file %s for reading", "Impossible d'ouvrir le fichier %s en lecture", "format_specifier"),
        ("Could not move image %1 to the trash", "Impossible de déplacer l'image %1 vers la corbeille",
         "format_specifier"),
        ("Saved %(count)d files to the folder", "%(count)d fichiers enregistrés dans le dossier", "format_specifier"),
        ("Delete the selected item {name} now", "Supprimer l'élément {name} maintenant", "format_specifier"),
        ("Unable to parse the value {0} here", "Impossible d'analyser la valeur {0} ici", "format_specifier"),
        ("The variable $HOME is not set", "La variable $HOME n'est pas définie", "format_specifier"),
        ("Progress is at %%.%% now here", "La progression est à %% maintenant", "format_specifier"),
        # markup
        ("<b>Warning</b> the disk is almost full", "<b>Attention</b> le disque est presque plein", "markup"),
        ("Tom &amp; Jerry are watching the screen", "Tom &amp; Jerry regardent l'écran", "markup"),
        # accelerators
        ("_File and folder options for you", "Options de _fichier et de dossier", "accelerator"),
        ("&Open the most recent document", "&Ouvrir le document le plus récent", "accelerator"),
        ("Save the document ~As a new copy", "Enregistrer le document ~sous une copie", "accelerator"),
        ("Save _As a new file on the disk", "Enregistrer _sous un nouveau fichier", "accelerator"),
        # URLs, e-mail, paths
        ("See https://example.org for more details", "Voir https://example.org pour les détails", "url"),
        ("Visit www.example.com to learn more", "Visitez www.example.com pour en savoir plus", "url"),
        ("Write to help@example.org for support", "Écrivez à help@example.org pour de l'aide", "url"),
        ("The settings are stored in /etc/foo/ here", "Les réglages sont dans /etc/foo/ ici", "url"),
        # options, digits, other characters
        ("-print-multi-directory Display the root directory", "-print-multi-directory Afficher la racine",
         "command_option"),
        ("Use 3 threads to compress the archive", "Utiliser 3 fils pour compresser l'archive", "digits"),
        ("Insert a table (with borders) now please", "Insérer un tableau (avec bordures) maintenant",
         "non_speakable_chars"),
        ("Search and replace all the words/phrases", "Rechercher et remplacer tous les mots/phrases",
         "non_speakable_chars"),
        # length and ratio
        ("Open file", "Ouvrir le fichier", "too_short"),
        ("Three words only", "Seulement trois mots", "too_short"),
        (" ".join(["word"] * 21), " ".join(["mot"] * 21), "too_long"),
        ("Choose whether the video stream should be redirected to the output", "Diffuser.", "length_ratio"),
        ("Show a very short hint", "Afficher une indication extrêmement longue qui ne correspond plus du tout "
         "à la phrase anglaise de départ et qui continue encore longtemps", "length_ratio"),
        # translation problems
        ("Resources for Debian members here", "Resources for Debian members here", "same_as_source"),
        ("Nothing was translated for this one", "", "untranslated"),
        ("", "Rien", "empty_source"),
        ("First line of text\nand the second line", "Première ligne\net la seconde", "multiline"),
    ],
)
def test_rejected(en, fr, reason):
    assert reason in REASONS
    got, _, _ = check_pair(en, fr)
    assert got == reason


def test_plural_entries_are_rejected():
    assert check_pair("One file was deleted from disk", "Un fichier a été supprimé", plural=True)[0] == "plural"


@pytest.mark.parametrize(
    "en, fr",
    [
        ("Deletes the current instance. You cannot delete the last instance.",
         "Supprime l'instance active. Vous ne pouvez pas supprimer la dernière instance."),
        ("Don't show this message again", "Ne plus montrer ce message"),
        ("Select the layer you want to move", "Sélectionnez le calque que vous voulez déplacer"),
        ("The import of following files has been cancelled:", "L'importation des fichiers suivants a été annulée :"),
        ("Apply macro to files...", "Appliquer une macro aux fichiers..."),
        ("A well-known, user-defined option", "Une option bien connue, définie par l'utilisateur"),
        ("Use \u201cquotes\u201d around the name", "Utilisez des \u00abguillemets\u00bb autour du nom"),
    ],
)
def test_kept(en, fr):
    reason, en_n, fr_n = check_pair(en, fr)
    assert reason is None, (en, reason)
    assert en_n == normalize(en) and fr_n == normalize(fr)


def test_word_bounds_are_inclusive():
    four = "Open the new file"
    twenty = " ".join(["word"] * 20)
    assert num_words(four) == 4 and check_pair(four, "Ouvrir le nouveau fichier")[0] is None
    assert check_pair(twenty, " ".join(["mot"] * 20))[0] is None


def test_normalize_typography():
    assert normalize("L\u2019image\u00a0: \u201cok\u201d\u2026  fin") == "L'image : \"ok\"... fin"
    assert normalize("a\u202f!") == "a !"


def test_dedup_key_ignores_case_and_punctuation():
    assert dedup_key("Open the File...") == dedup_key("open the file")
    assert dedup_key("Open the file") != dedup_key("Open a file")
